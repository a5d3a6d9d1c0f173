"""Every golden fbank case on every backend available here (README tolerance rule)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from fbank_golden_util import TRITON_MAX_SAMPLES, cases, check_fbank, load
from ssast_fast import _ext
from ssast_fast.features import FbankOptions, fbank
from ssast_fast.features.dispatch import resolve_backend

IDS = lambda c: c["name"]  # noqa: E731
with FakeTensorMode():  # a float32 waveform on CUDA, without a GPU (device and dtype only)
    CUDA_WAVE = torch.empty(1, 16000, device="cuda")


def _triton_supports(case: dict) -> bool:
    from ssast_fast.features.fbank_triton import supports

    return "expect_error" in case or supports(FbankOptions(**case["kwargs"]))


TRITON_CASES = [c for c in cases(TRITON_MAX_SAMPLES) if _triton_supports(c)]
TRITON_DECLINED = [c for c in cases() if not _triton_supports(c)]


def _run(case: dict, backend: str, dtype=torch.float32) -> np.ndarray:
    z = load(case)
    wav = torch.from_numpy(z["waveform"]).to(dtype)[None]  # (1, n), as torchaudio got it
    return fbank(wav, backend=backend, **case["kwargs"]).numpy()


def _check(case: dict, backend: str) -> None:
    if "expect_error" in case:
        with pytest.raises(ValueError, match="too short"):
            _run(case, backend)
        return
    check_fbank(case, _run(case, backend), load(case)["fbank_f64"])


@pytest.mark.parametrize("case", cases(), ids=IDS)
def test_torch(case):
    _check(case, "torch")


@pytest.mark.parametrize("case", cases(), ids=IDS)
def test_cpp(case):
    if not _ext.available():
        pytest.fail("compiled extension ssast_fast._C is not built")
    _check(case, "cpp")


@pytest.mark.parametrize("case", TRITON_CASES, ids=IDS)
def test_triton_interpreter(case):
    assert os.environ.get("TRITON_INTERPRET") == "1" and case["num_samples"] <= TRITON_MAX_SAMPLES
    _check(case, "triton")


def test_triton_declines_non_power_of_two_fft():
    """opt2_no_pow2_fft (a 400-point FFT): the Triton kernel refuses it with a clear error, and
    `auto` on a CUDA tensor sends it to the torch path instead."""
    assert "opt2_no_pow2_fft" in {c["name"] for c in TRITON_DECLINED}
    for case in TRITON_DECLINED:
        o = FbankOptions(**case["kwargs"])
        fft = "400" if case["name"] == "opt2_no_pow2_fft" else ""
        with pytest.raises(ValueError, match=f"triton.*{fft}"):  # names the backend and the size
            _run(case, "triton")
        assert resolve_backend(CUDA_WAVE, "auto", o) == "torch"
        check_fbank(case, _run(case, "torch"), load(case)["fbank_f64"])


@pytest.mark.parametrize("case", cases(20_000)[:6], ids=IDS)
def test_auto_both_paths(case, ext_path):
    """backend='auto' on the CPU: the C++ kernel when built, the torch path when forced pure."""
    _check(case, "auto")


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_float64_input(backend):
    """float64 in -> float64 out, within the mel-matrix rounding of fbank_f64."""
    case = next(c for c in cases() if c["name"] == "ssast16k_speech_en")
    out = _run(case, backend, torch.float64)
    assert out.dtype == np.float64
    # torch 2.13 rounds the float32 log in the mel matrix differently from torch 2.9.1 at a few
    # FFT bins (1 ulp), which moves outputs by up to ~1.2e-4; everything else is float64.
    assert np.abs(out - load(case)["fbank_f64"]).max() < 2e-4
