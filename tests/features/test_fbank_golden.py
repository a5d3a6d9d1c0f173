"""Every golden fbank case on every backend available here (README tolerance rule)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from fbank_golden_util import cases, check_fbank, load
from ssast_fast import _ext
from ssast_fast.features import fbank

TRITON_MAX_SAMPLES = 20_000  # interpreter runs on the short cases only
IDS = lambda c: c["name"]  # noqa: E731


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


@pytest.mark.parametrize("case", cases(TRITON_MAX_SAMPLES), ids=IDS)
def test_triton_interpreter(case):
    assert os.environ.get("TRITON_INTERPRET") == "1"
    _check(case, "triton")


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
