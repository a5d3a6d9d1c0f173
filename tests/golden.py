"""The golden fixtures: the one place tests and benchmarks find them.

Two sets in one format (``ssast-golden-fixtures/1``; see ``../shared/golden/*/README.md``):

* the full set: ``$SSAST_GOLDEN`` when set, else ``../shared/golden`` beside the repository (CI);
* the compact subset this repository carries, ``tests/golden_subset/`` (its README says what it
  holds), used when neither exists, so the parity tests run in any clone.

In the subset the model inputs ``x`` and the pretraining weights are drawn from their manifest
recipes (checked against the recorded sha256), and gradient files hold fewer tensors: the
others are checked against the manifest's per-tensor statistics.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO / "tests" / "golden_subset"


def golden_root() -> Path:
    """The fixture folder in use (holds ``model/`` and ``fbank/``)."""
    env = os.environ.get("SSAST_GOLDEN")
    if env:
        root = Path(env)
        if not (root / "model" / "manifest.json").is_file():
            raise FileNotFoundError(f"SSAST_GOLDEN={env} holds no golden fixtures "
                                    "(expected model/manifest.json and fbank/manifest.json)")
        return root
    shared = REPO.parent / "shared" / "golden"
    return shared if shared.is_dir() else SUBSET


def is_subset() -> bool:
    return "subset" in model_manifest()


@functools.lru_cache(maxsize=None)
def _manifest(root: Path, kind: str) -> dict:
    return json.loads((root / kind / "manifest.json").read_text())


def model_manifest() -> dict:
    return _manifest(golden_root(), "model")


def fbank_manifest() -> dict:
    return _manifest(golden_root(), "fbank")


def rel_l2(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def sha256(a: np.ndarray) -> str:
    """sha256 of an array's little-endian C-order bytes (the manifests' tensor hashes)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A .safetensors file as numpy arrays, with numpy alone (the GPU machine may lack the
    safetensors package): u64 header size, JSON header, then each tensor's C-order bytes."""
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for key, t in header.items():
        start, end = (8 + n + o for o in t["data_offsets"])
        out[key] = np.frombuffer(data[start:end], _ST_DTYPES[t["dtype"]]).reshape(t["shape"]).copy()
    return out


def draw(recipe: dict) -> dict[str, np.ndarray]:
    """Tensors of a weight recipe (model README, "Recipe"): numpy only, float32 arithmetic."""
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


def draw_input(case_id: str) -> np.ndarray:
    """The case's input x, drawn as its manifest says, checked against the recorded sha256."""
    inp = model_manifest()["cases"][case_id]["input"]
    x = np.random.default_rng(inp["seed"]).standard_normal(inp["shape"]).astype(inp["dtype"])
    if sha256(x) != inp["sha256"]:
        raise AssertionError(f"{case_id}: redrawn input differs from the recorded one "
                             "(has numpy's normal generator changed?)")
    return x


def npz(case_id: str) -> dict[str, np.ndarray]:
    """Arrays of a model case (``cases/<case>.npz``); the input is redrawn where not stored."""
    case = model_manifest()["cases"][case_id]
    with np.load(golden_root() / "model" / case["file"]) as z:
        out = dict(z)
    out.setdefault(case["input"]["key"], draw_input(case_id))
    return out


def grads(case_id: str, task: str) -> dict[str, np.ndarray]:
    """Stored parameter gradients of a case's task ({} where only statistics are kept)."""
    g = model_manifest()["cases"][case_id]["tasks"][task]["grads"]
    return read_safetensors(golden_root() / "model" / g["file"]) if g["file"] else {}


def maskgen_records() -> list[dict]:
    return json.loads((golden_root() / "model" / "maskgen.json").read_text())["records"]


@functools.lru_cache(maxsize=None)
def _state_dict_cached(root: Path, case_id: str) -> tuple:
    w = model_manifest()["cases"][case_id]["weights"]
    if w["storage"] == "full":
        t = read_safetensors(root / "model" / w["file"])
    elif w["storage"] == "delta":
        # The subset's delta files hold only what no recipe gives; the head comes from its recipe.
        head = draw(w["head_recipe"]) if "head_recipe" in w else {}
        t = {**state_dict(w["base_model"]), **head, **read_safetensors(root / "model" / w["file"])}
    elif w["storage"] == "recipe":
        t = draw(w["recipe"])
    else:
        raise ValueError(f"{case_id}: unknown weights storage {w['storage']!r}")
    sd = {k: t[k] for k in w["keys"]}
    for k, shape, dtype in zip(w["keys"], w["shapes"], w["dtypes"]):
        assert list(sd[k].shape) == shape and str(sd[k].dtype) == dtype, k
        assert sha256(sd[k]) == w["sha256"][k], k
    return tuple(sd.items())


def state_dict(case_id: str) -> dict[str, np.ndarray]:
    """Full reference state dict of a golden model case, in state-dict key order."""
    return dict(_state_dict_cached(golden_root(), case_id))


def head_recipe(case_id: str) -> dict[str, np.ndarray]:
    return draw(model_manifest()["cases"][case_id]["weights"]["head_recipe"])


def fbank_npz(case: dict) -> dict[str, np.ndarray]:
    """Arrays of an fbank case (``<case>.npz``)."""
    with np.load(golden_root() / "fbank" / case["file"]) as z:
        return dict(z)


def wav_path(case: dict) -> Path:
    """The 16-bit PCM source of a pipeline fbank case."""
    return golden_root() / "fbank" / case["wav_file"]
