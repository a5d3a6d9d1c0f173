"""Mask generation, B=24, 512 patches (8 x 64 grid), 400 masked.

exact C++ (``batch_masks``), the pure-Python reference algorithm (per sample, Python's random
and set), and the batched ``sample_masks`` (torch's RNG) on the CPU and, when present, CUDA.
Run: python -m pytest benchmarks/bench_masks.py --benchmark-only
"""
import random

import pytest
import torch

from ssast_fast import _ext
from ssast_fast.masking import batch_masks, sample_masks

B, N, M, T_DIM = 24, 512, 400, 64


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
    with _ext.pure():
        out = benchmark(batch_masks, B, N, M, T_DIM, cluster)
    assert out.shape == (B, M)


@pytest.mark.parametrize("cluster", [True, False], ids=["patch", "frame"])
def test_fast_cpu(benchmark, cluster):
    gen = torch.Generator().manual_seed(0)
    out = benchmark(sample_masks, B, N, M, T_DIM, cluster, generator=gen)
    assert out.shape == (B, M)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("cluster", [True, False], ids=["patch", "frame"])
def test_fast_cuda(benchmark, cluster):
    gen = torch.Generator("cuda").manual_seed(0)

    def draw():
        out = sample_masks(B, N, M, T_DIM, cluster, generator=gen, device="cuda")
        torch.cuda.synchronize()
        return out

    out = benchmark(draw)
    assert out.shape == (B, M) and out.is_cuda
