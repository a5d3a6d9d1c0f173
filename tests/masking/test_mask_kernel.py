"""The mask op ``ssast_fast::masks`` (CPU here) and the CUDA kernel (GPU checks, skipped without).

On the CPU: the op's schema, fake kernel and CPU kernel, torch.compile over ``sample_masks`` (no
graph break, no merged draws, the same masks as eager), and the self-check's fallback. The GPU
checks live in cuda_checks.py (also run by benchmarks/gpu_suite.py through bench_masks.gpu_checks).
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import cuda_checks
from ssast_fast import _ext
from ssast_fast.masking import kernel_op, sample_masks
from ssast_fast.masking.dispatch import resolve_backend
from ssast_fast.ops import dispatch

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _host_core():
    if not _ext.available():
        pytest.fail("the mask op's CPU kernel is ssast_fast._C: build it")


def test_op_passes_opcheck():
    for args in ((4, 128, 40, 16, True, 7, CPU), (3, 60, 20, 0, False, 2**62 - 1, CPU), (0, 64, 24, 8, True, 1, CPU)):
        torch.library.opcheck(torch.ops.ssast_fast.masks.default, args)


def test_op_cpu_kernel_is_the_host_core():
    masks = torch.ops.ssast_fast.masks
    assert torch.equal(masks(6, 1212, 250, 101, True, 5, CPU), _ext.get().mask_fast(5, 6, 1212, 250, 101, True))
    drawn = masks(6, 512, 400, 64, True, -1, CPU, torch.Generator().manual_seed(3))  # seed drawn in the op
    want_seed = kernel_op.draw_seed(torch.Generator().manual_seed(3))
    assert torch.equal(drawn, _ext.get().mask_fast(want_seed, 6, 512, 400, 64, True))


def test_fake_kernel_on_cuda_without_a_gpu():
    with FakeTensorMode():
        out = torch.ops.ssast_fast.masks(24, 512, 400, 64, True, -1, torch.device("cuda"))
    assert out.shape == (24, 400) and out.dtype == torch.long and out.device.type == "cuda"


def test_compiled_sampler_draws_like_eager():
    """fullgraph: the draws are not merged (nondeterministic_seeded) and, from the same global
    seed, equal eager's (eager draws each seed before the op, compiled inside it, in order)."""
    def step():
        return (sample_masks(8, 512, 400, 64), sample_masks(8, 512, 400, 64),
                sample_masks(8, 128, 50, 16, cluster=False))

    compiled = torch.compile(step, fullgraph=True)
    torch.manual_seed(4)
    eager = step()
    torch.manual_seed(4)
    traced = compiled()
    assert not torch.equal(traced[0], traced[1])
    for a, b in zip(eager, traced):
        assert torch.equal(a, b)


def test_self_check_falls_back_with_one_warning(monkeypatch):
    """A CUDA module whose masks differ from the host core: one warning, then not ready."""
    class WrongKernel:
        @staticmethod
        def masks(batch, n, m, t_dim, cluster, seed, device, generator):
            return torch.zeros(batch, m, dtype=torch.long)

    monkeypatch.setattr(_ext, "get_cuda", lambda: WrongKernel)
    monkeypatch.setattr(dispatch, "_checks", {})
    with pytest.warns(RuntimeWarning, match="self-check on cuda:3 .*different masks"):
        assert resolve_backend(torch.device("cuda:3")) != "cuda"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_backend(torch.device("cuda:3")) != "cuda"


def test_no_kernel_without_the_cuda_module(monkeypatch):
    monkeypatch.setattr(_ext, "get_cuda", lambda: None)
    assert resolve_backend(torch.device("cuda:0")) != "cuda"
    with _ext.pure():
        assert resolve_backend(torch.device("cuda:0")) != "cuda"


needs_kernel = pytest.mark.skipif(not torch.cuda.is_available() or _ext.get_cuda() is None,
                                  reason="needs a CUDA device and ssast_fast._C_cuda")


@needs_kernel
@pytest.mark.parametrize("check", cuda_checks.CHECKS, ids=lambda c: c.__name__)
def test_cuda_kernel(check):
    check("cuda")
