"""Golden fbank fixtures and the README tolerance rule, shared by the feature tests."""
from __future__ import annotations

import math

import numpy as np

from golden import fbank_manifest, fbank_npz

DB60 = 6 * math.log(10)  # 60 dB of power in natural-log units
# The Triton interpreter runs on the CPU at ~1/1000 of kernel speed: CI gives it the short
# fixtures only; benchmarks/gpu_suite.py runs every fixture on a GPU.
TRITON_MAX_SAMPLES = 20_000


def floor_value() -> np.float32:
    return np.float32(fbank_manifest()["constants"]["log_of_epsilon_f32"])


def cases(max_samples: int | None = None) -> list[dict]:
    out = fbank_manifest()["cases"]
    if max_samples is not None:
        out = [c for c in out if c["num_samples"] <= max_samples]
    return out


def load(case: dict) -> dict[str, np.ndarray]:
    return fbank_npz(case)


def tolerances(case: dict) -> tuple[float, float]:
    """(all entries, entries within 60 dB of their frame's maximum): the fixture README's rule,
    twice torchaudio's own float32 error, never below 1e-4 and 1e-3."""
    err = case["f32_vs_f64"]
    return (max(2 * err["max_abs"], 1e-4),
            max(2 * err["max_abs_within_60dB_of_row_max"], 1e-3))


def check_fbank(case: dict, out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Assert the README rule for one case; return the error statistics."""
    name = case["name"]
    assert out.shape == ref.shape == tuple(case["fbank_shape"]), name
    assert out.shape[0] == case["kaldi_expected_num_frames"], name
    err = np.abs(out.astype(np.float64) - ref)
    atol, near_tol = tolerances(case)
    assert err.max() <= atol, (name, err.max(), atol)
    near = ref >= ref.max(axis=1, keepdims=True) - DB60
    assert err[near].max() <= near_tol, (name, err[near].max(), near_tol)
    floor = floor_value()
    for col in case["empty_mel_filter_columns"]:
        assert (out[:, col] == floor).all(), (name, col)
    at_floor = ref == np.float64(math.log(np.float32(1.1920928955078125e-07)))
    if out.dtype == np.float32:
        assert (out[at_floor] == floor).all(), name
    return {"max_abs": float(err.max()), "ratio": float(err.max() / atol)}
