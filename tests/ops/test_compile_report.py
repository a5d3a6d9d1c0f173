"""benchmarks/compile_report.py: the sm_90 resource report of the Triton kernels.

CI runs the full report as its own step (with triton 3.7.1 and 3.6.0); here: its subset mode end
to end (compiles the production default configs and checks their resources and that real
launches specialize as the report compiles them), and, without compiling, that every input the
ops' ``supports()`` accept maps to a config the full report compiles.
"""
from __future__ import annotations

import sys

import pytest
import torch

from triton_compile import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import compile_report as R  # noqa: E402
from ssast_fast.features import fbank_triton as ft  # noqa: E402
from ssast_fast.features.kaldi import FbankOptions  # noqa: E402
from ssast_fast.ops import attention as A  # noqa: E402
from ssast_fast.ops import infonce as I  # noqa: E402

needs_triton = pytest.mark.skipif(not A.HAS_TRITON, reason="triton is not installed")
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@pytest.fixture(scope="module")
def full_jobs():
    jobs, torch_path = R.build_jobs()
    return jobs, torch_path


@needs_triton
def test_subset_report_fits_hopper():
    rows = R.run_report(subset=True, jobs=2, use_cache=False)
    kernels = {(r["family"], r["kernel"]) for r in rows}
    assert {("attention", "fwd"), ("attention", "bwd_preprocess"), ("attention", "bwd_dkdv"),
            ("attention", "bwd_dq"), ("infonce", "rows"), ("infonce", "cols grad=1"),
            ("infonce", "cols grad=0"), ("fbank", "spectrum"), ("fbank", "mel_log")} <= kernels
    assert not [r for r in rows if r["family"] == "launch"], rows  # launches match the report
    for r in (r for r in rows if r["selectable"]):
        assert r["ok"] and r["error"] is None, r
        assert 0 < r["shared"] <= R.SHARED_LIMIT and 0 < r["registers"] <= 255, r
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r


@needs_triton
def test_attention_supports_only_what_the_report_compiles(full_jobs):
    jobs, torch_path = full_jobs
    compiled = {(j.kernel, j.row.dtype, int(j.row.dim)) for j in jobs
                if j.row.family == "attention"}
    on_torch = {(r.dtype, int(r.dim)) for r in torch_path if r.family == "attention"}
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        for d in range(1, 260):
            if A.supports(dtype, d):
                for kernel in ("fwd", "bwd_preprocess", "bwd_dkdv", "bwd_dq"):
                    assert (kernel, name, d) in compiled, (kernel, name, d)
            elif d in R.HEAD_DIMS:
                assert (name, d) in on_torch  # reported as running on the torch path
    assert not A.supports(torch.float64, 64)


@needs_triton
def test_infonce_supports_only_what_the_report_compiles(full_jobs):
    jobs, _ = full_jobs
    compiled = {(j.kernel, j.row.dtype, int(j.row.dim), j.consts.get("COMPUTE_GRAD"))
                for j in jobs if j.row.family == "infonce"}
    assert I.supports(torch.float32, 256)  # the model's D (16 x 16 patches), in float32
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        for d in range(1, 1100):
            if I.supports(dtype, d):
                bd = I.block_d(d)
                assert bd >= d and bd % 16 == 0
                assert {("rows", name, bd, None), ("cols", name, bd, True),
                        ("cols", name, bd, False)} <= compiled, (name, d)
        assert not I.supports(dtype, I.max_d(dtype) + 1)
    assert not I.supports(torch.float64, 256)


@needs_triton
def test_fbank_supports_only_what_the_report_compiles(full_jobs):
    jobs, _ = full_jobs
    ffts = {int(j.consts["N1"] * j.consts["N2"]) for j in jobs if j.kernel == "spectrum_kernel"}
    assert ffts == set(ft.FFT_SIZES)
    assert any(j.kernel == "mel_log_kernel" for j in jobs)
    for rate in (4000, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000):
        for length, pow2 in ((25.0, True), (25.0, False), (50.0, True), (10.0, True)):
            try:
                o = FbankOptions(sample_frequency=rate, frame_length=length,
                                 round_to_power_of_two=pow2, num_mel_bins=23)
            except ValueError:
                continue
            assert ft.supports(o) == (o.padded_window_size in ffts), (rate, length, pow2)
    for kwargs in R.FBANK_SETTINGS.values():  # the settings the issue names
        assert ft.supports(FbankOptions(**kwargs)), kwargs


def test_row_verdicts():
    row = R.Row("attention", "fwd", "float16", "64", "128x64 w4 s3", shared=65536, registers=200,
                spill_stores=0, spill_loads=0, stack=0)
    assert row.ok and not R.failures([row])
    for bad in (dict(shared=R.SHARED_LIMIT + 1), dict(spill_stores=8), dict(spill_loads=4),
                dict(error="OutOfResources")):
        r = R.Row(**{**row.__dict__, **bad})
        assert not r.ok and R.failures([r]) == [r]
        assert "ok" not in R.format_rows([r]).splitlines()[-1].split()[-1:]
    listed_not = R.Row(**{**row.__dict__, "spill_stores": 8, "selectable": False})
    assert not R.failures([listed_not])  # a --candidates row outside the tables
