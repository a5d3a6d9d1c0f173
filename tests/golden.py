"""Access to the golden fixtures in ../shared/golden (override with SSAST_GOLDEN)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def golden_root() -> Path:
    root = Path(os.environ.get("SSAST_GOLDEN", REPO.parent / "shared" / "golden"))
    if not root.is_dir():
        raise FileNotFoundError(f"golden fixtures not found at {root}; set SSAST_GOLDEN")
    return root


@functools.lru_cache(maxsize=None)
def model_manifest() -> dict:
    return json.loads((golden_root() / "model" / "manifest.json").read_text())


@functools.lru_cache(maxsize=None)
def fbank_manifest() -> dict:
    return json.loads((golden_root() / "fbank" / "manifest.json").read_text())


def rel_l2(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _draw(recipe: dict) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(recipe["seed"])
    out = {}
    for key, shape, dtype, kind, *value in recipe["entries"]:
        if kind == "keep":
            out[key] = np.array(value[0], dtype=dtype).reshape(shape)
            continue
        z = rng.standard_normal(shape).astype(np.float32)
        if kind == "normal":
            out[key] = z * np.float32(0.02)
        elif kind == "ln":
            out[key] = np.float32(1) + np.float32(0.1) * z
        else:
            raise ValueError(f"unknown recipe kind {kind!r}")
    return out


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def _state_dict_cached(case_id: str) -> tuple:
    from safetensors.numpy import load_file

    w = model_manifest()["cases"][case_id]["weights"]
    root = golden_root() / "model"
    if w["storage"] == "full":
        t = load_file(root / w["file"])
    elif w["storage"] == "delta":
        t = {**state_dict(w["base_model"]), **load_file(root / w["file"])}
    else:
        t = _draw(w["recipe"])
    sd = {k: t[k] for k in w["keys"]}
    for k, shape, dtype in zip(w["keys"], w["shapes"], w["dtypes"]):
        assert list(sd[k].shape) == shape and str(sd[k].dtype) == dtype, k
        assert _sha(sd[k]) == w["sha256"][k], k
    return tuple(sd.items())


def state_dict(case_id: str) -> dict[str, np.ndarray]:
    """Full reference state dict of a golden model case, in state-dict key order."""
    return dict(_state_dict_cached(case_id))


def head_recipe(case_id: str) -> dict[str, np.ndarray]:
    return _draw(model_manifest()["cases"][case_id]["weights"]["head_recipe"])
