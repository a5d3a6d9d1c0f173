"""ssast_fast.ops._triton_common: launch configurations per config class (TunedKernel),
pinned_configs, shape buckets and the alignment guard (kernels under TRITON_INTERPRET=1)."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from ssast_fast.ops import _triton_common as C

pytestmark = pytest.mark.skipif(not C.HAS_TRITON, reason="triton is not installed")

if C.HAS_TRITON:
    triton, tl = C.triton, C.tl

    @triton.jit
    def _write_blocks(OUT, n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        """OUT[2 * pid : 2 * pid + 2] = (BLOCK_M, BLOCK_N)."""
        pid = tl.program_id(0)
        tl.store(OUT + 2 * pid, BLOCK_M)
        tl.store(OUT + 2 * pid + 1, BLOCK_N)

TABLE = {"small": [(16, 32, 4, 2), (32, 16, 8, 3)], "large": [(64, 16, 4, 2)]}


def _tuned(interpret: bool = False) -> "C.TunedKernel":
    return C.TunedKernel(_write_blocks, TABLE, lambda a: "small" if a["n"] < 10 else "large",
                         key=["n"], interpret=interpret, interpret_config=(8, 8, 1, 1))


def _launch(tk, n: int, programs: int = 2) -> list[int]:
    out = torch.zeros(2 * programs, dtype=torch.int32)
    grids = []

    def grid(meta):
        grids.append(dict(meta))
        return (programs,)

    tk.launch(grid, out, n)
    assert grids and set(grids[0]) == {"BLOCK_M", "BLOCK_N"}
    return out.tolist()


def test_pinned_launch_uses_the_class_default():
    tk = _tuned()
    with C.pinned_configs():
        assert C.configs_pinned()
        assert _launch(tk, 3) == [16, 32] * 2  # first config of "small"
        assert _launch(tk, 50) == [64, 16] * 2
    assert not C.configs_pinned()
    assert tk.default("small") == C.BlockConfig(16, 32, 4, 2)


def test_single_config_class_launches_without_autotuning():
    assert _launch(_tuned(), 50) == [64, 16] * 2


def test_multi_config_class_goes_through_the_autotuner(monkeypatch):
    tk = _tuned()
    calls = []

    class FakeTuner:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: calls.append((grid, args, kwargs))

    monkeypatch.setattr(tk, "_tuner", FakeTuner())
    _launch_args = (torch.zeros(4, dtype=torch.int32), 3)
    tk.launch(lambda meta: (1,), *_launch_args)
    assert len(calls) == 1 and calls[0][1][1] == 3


def test_interpreter_uses_its_own_config():
    assert _launch(_tuned(interpret=True), 3) == [8, 8] * 2


def test_unknown_class_is_a_clear_error():
    tk = C.TunedKernel(_write_blocks, {"small": TABLE["small"]}, lambda a: "other", key=["n"],
                       interpret=False, interpret_config=(8, 8, 1, 1))
    with C.pinned_configs(), pytest.raises(ValueError, match="no launch configuration"):
        _launch(tk, 3)


def test_autotuning_sees_only_the_launch_class_and_plain_configs():
    tk = _tuned()
    configs = tk._tuner.configs
    assert len(configs) == 3  # the union of the classes, each config once
    small = tk._prune(configs, {"n": 3})
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages)
            for c in small] == TABLE["small"]
    assert [c.kwargs["BLOCK_M"] for c in tk._prune(configs, {}, n=99)] == [64]
    assert tk._tuner.keys == ["n"]
    for c in configs:  # what Triton's autotune disk cache stores and loads back
        again = triton.Config(**json.loads(json.dumps(c.__dict__)))
        assert again == c and set(vars(again)) == set(vars(c))


def test_pinned_configs_is_process_wide_and_nests():
    seen = []
    with C.pinned_configs():
        with C.pinned_configs():
            pass
        t = threading.Thread(target=lambda: seen.append(C.configs_pinned()))
        t.start()
        t.join()
        assert C.configs_pinned()
    assert seen == [True] and not C.configs_pinned()


@pytest.mark.parametrize("n, lo, hi, want", [(1, 16, 1024, 16), (16, 16, 1024, 16),
                                             (17, 16, 1024, 32), (514, 16, 1024, 1024),
                                             (5000, 16, 1024, 1024), (288, 1, 1024, 512),
                                             (3, 1, 1024, 4)])
def test_pow2_bucket(n, lo, hi, want):
    assert C.pow2_bucket(n, lo, hi) == want


def test_aligned_keeps_aligned_tensors_and_copies_the_rest():
    x = torch.randn(2, 3, 5, 32)
    assert C.aligned(x) is x
    view = torch.randn(4 * 3 * 64).view(4, 3, 64)[:, :, :32]  # strides (192, 64, 1): aligned
    assert C.aligned(view) is view
    for bad in (torch.randn(2 * 32 + 1)[1:].view(2, 32),  # misaligned pointer
                torch.randn(32).expand(4, 32),  # stride 0 is fine, ...
                torch.randn(32, 4).t(),  # ... a non-unit last stride is not
                torch.randn(3, 20)):  # row stride 20
        y = C.aligned(bad)
        torch.testing.assert_close(y, bad)
        *lead, last = y.stride()
        aligned_ptr = y.data_ptr() % 16 == 0 and last == 1
        assert aligned_ptr and (all(s % 16 == 0 for s in lead) or bad.shape[-1] % 16)
