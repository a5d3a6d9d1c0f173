"""Mask generation, B=24, 512 patches (8 x 64 grid), 400 masked: exact C++ vs pure Python.

Run: python -m pytest benchmarks/bench_masks.py --benchmark-only
The pure-Python path is the reference algorithm (per sample, Python's random and set).
"""
import random

import pytest

from ssast_fast import _ext
from ssast_fast.masking import batch_masks

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
