"""Mask generation benchmarks.

B=24, 512 patches (8 x 64 grid), 400 masked: exact C++ (``batch_masks``), the pure-Python
reference algorithm (per sample, Python's random and set), and the batched ``sample_masks``
(torch's RNG) on the CPU.
Issue 16: ``sample_masks`` at B=24 and B=1024 for 512/400/64 and 1212/400/101: the shared core
on the CPU, and on CUDA the kernel against the tensor-op path (``backend="torch"``).
Run: python -m pytest benchmarks/bench_masks.py --benchmark-only

``gpu_checks()`` and ``gpu_bench(time_ms, device)`` are the mask entries of benchmarks/gpu_suite.py
(sections ``masks/check`` and ``masks/bench``).
"""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Callable

import pytest
import torch

from ssast_fast import _ext
from ssast_fast.masking import batch_masks, sample_masks
from ssast_fast.masking.dispatch import resolve_backend

B, N, M, T_DIM = 24, 512, 400, 64
KERNEL_BATCHES = (24, 1024)
KERNEL_SETTINGS = ((512, 400, 64), (1212, 400, 101))  # (n, M, t_dim)
kernel_ids = [f"{n}/{m}/{t}" for n, m, t in KERNEL_SETTINGS]


@pytest.mark.parametrize("cluster", [True, False], ids=["patch", "frame"])
def test_exact_cpp(benchmark, cluster):
    if not _ext.available():
        pytest.skip("compiled extension not built")
    random.seed(0)
    out = benchmark(batch_masks, B, N, M, T_DIM, cluster)
    assert out.shape == (B, M)


@pytest.mark.parametrize("cluster", [True, False], ids=["patch", "frame"])
def test_reference_python(benchmark, cluster):
    random.seed(0)
    out = benchmark(batch_masks, B, N, M, T_DIM, cluster, backend="python")
    assert out.shape == (B, M)


@pytest.mark.parametrize("cluster", [True, False], ids=["patch", "frame"])
def test_fast_cpu(benchmark, cluster):
    gen = torch.Generator().manual_seed(0)
    out = benchmark(sample_masks, B, N, M, T_DIM, cluster, generator=gen)
    assert out.shape == (B, M)


@pytest.mark.parametrize("setting", KERNEL_SETTINGS, ids=kernel_ids)
@pytest.mark.parametrize("batch", KERNEL_BATCHES)
def test_core_cpu(benchmark, batch, setting):
    """The shared core on the CPU (the host build of the CUDA kernel's code)."""
    gen = torch.Generator().manual_seed(0)
    out = benchmark(sample_masks, batch, *setting, generator=gen)
    assert out.shape == (batch, setting[1])


def _cuda_draw(batch: int, setting: tuple[int, int, int], kernel: bool) -> Callable[[], torch.Tensor]:
    """One synchronised draw on CUDA by the kernel or by the tensor-op path."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if kernel and resolve_backend("cuda") != "cuda":
        pytest.skip("CUDA mask kernel not built (ssast_fast._C_cuda) or failed its self-check")

    def draw():
        out = sample_masks(batch, *setting, device="cuda", backend="cuda" if kernel else "torch")
        torch.cuda.synchronize()
        return out

    return draw


@pytest.mark.parametrize("setting", KERNEL_SETTINGS, ids=kernel_ids)
@pytest.mark.parametrize("batch", KERNEL_BATCHES)
@pytest.mark.parametrize("path", ["kernel", "tensor_ops"])
def test_cuda(benchmark, path, batch, setting):
    out = benchmark(_cuda_draw(batch, setting, path == "kernel"))
    assert out.shape == (batch, setting[1]) and out.is_cuda


def gpu_checks(device: str = "cuda") -> list[tuple[str, str]]:
    """The CUDA kernel's checks (tests/masking/cuda_checks.py): [(name, "ok" or "FAIL: ...")]."""
    path = Path(__file__).resolve().parent.parent / "tests" / "masking" / "cuda_checks.py"
    spec = importlib.util.spec_from_file_location("cuda_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run_all(device)


def gpu_bench(time_ms: Callable[[Callable[[], object]], float], device: str = "cuda") -> list[list]:
    """Rows [path, B, setting, ms] on ``device``: the compiled sampler (the CUDA kernel on CUDA,
    absent when it is not ready; the C++ core on the CPU) and the tensor-op path, timed by the
    suite's ``time_ms`` (which synchronises)."""
    compiled = "cuda" if torch.device(device).type == "cuda" else "cpp"
    paths = {"tensor ops": "torch"}
    if resolve_backend(device) == compiled:  # built (and, on CUDA, passed its self-check)
        paths = {"kernel" if compiled == "cuda" else "C++ core": compiled, **paths}
    rows = []
    for batch in KERNEL_BATCHES:
        for setting, name in zip(KERNEL_SETTINGS, kernel_ids):
            for path, backend in paths.items():
                rows.append([path, batch, name, time_ms(
                    lambda: sample_masks(batch, *setting, device=device, backend=backend))])
    return rows
