"""Golden fbank fixtures and the README tolerance rule, shared by the feature tests."""
from __future__ import annotations

import math

import numpy as np

from golden import fbank_manifest, golden_root

DB60 = 6 * math.log(10)  # 60 dB of power in natural-log units


def floor_value() -> np.float32:
    return np.float32(fbank_manifest()["constants"]["log_of_epsilon_f32"])


def cases(max_samples: int | None = None) -> list[dict]:
    out = fbank_manifest()["cases"]
    if max_samples is not None:
        out = [c for c in out if c["num_samples"] <= max_samples]
    return out


def load(case: dict) -> dict[str, np.ndarray]:
    return dict(np.load(golden_root() / "fbank" / case["file"]))


def check_fbank(case: dict, out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Assert the README rule for one case; return the error statistics."""
    name = case["name"]
    assert out.shape == ref.shape == tuple(case["fbank_shape"]), name
    assert out.shape[0] == case["kaldi_expected_num_frames"], name
    err = np.abs(out.astype(np.float64) - ref)
    atol = max(2 * case["f32_vs_f64"]["max_abs"], 1e-4)
    assert err.max() <= atol, (name, err.max(), atol)
    near = ref >= ref.max(axis=1, keepdims=True) - DB60
    assert err[near].max() <= 1e-3, (name, err[near].max())
    floor = floor_value()
    for col in case["empty_mel_filter_columns"]:
        assert (out[:, col] == floor).all(), (name, col)
    at_floor = ref == np.float64(math.log(np.float32(1.1920928955078125e-07)))
    if out.dtype == np.float32:
        assert (out[at_floor] == floor).all(), name
    return {"max_abs": float(err.max()), "ratio": float(err.max() / atol)}
