"""The golden subset in tests/golden_subset: intact, faithful to the full set, and usable.

Where the full set is present (CI), the subset is rebuilt from it in memory and compared, and
a selection of parity tests runs on the subset alone, as in a clone with nothing beside it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import golden
from golden import REPO, SUBSET, golden_root

SUBSET_TESTS = [  # what differs on the subset: redrawn weights and inputs, fewer stored grads
    "tests/model/test_golden_model.py::test_pretrain_golden[ext-pt_patch_t256-mpc-sdpa]",
    "tests/model/test_golden_model.py::test_pretrain_golden[ext-pt_frame_t256-mpc-sdpa]",
    "tests/model/test_golden_model.py::test_finetune_golden[ft_patch_overlap_t128-ft_cls-sdpa]",
    "tests/model/test_golden_model.py::test_finetune_construction_matches_reference",
    "tests/model/test_golden_model.py::test_masks_golden",
    "tests/features/test_fbank_golden.py::test_cpp",
    "tests/features/test_frontend.py::test_pipeline_case_from_wav",
]


def _listed_files() -> dict[str, dict]:
    model = json.loads((SUBSET / "model" / "manifest.json").read_text())
    fbank = json.loads((SUBSET / "fbank" / "manifest.json").read_text())
    return {**{f"model/{k}": v for k, v in model["files"].items()},
            **{f"fbank/{k}": v for k, v in fbank["subset"]["files"].items()}}


def test_subset_files_match_their_manifests():
    listed = _listed_files()
    for rel, want in listed.items():
        data = (SUBSET / rel).read_bytes()
        assert len(data) == want["bytes"] and hashlib.sha256(data).hexdigest() == want["sha256"], rel
    present = {str(p.relative_to(SUBSET)) for p in SUBSET.rglob("*")
               if p.is_file() and p.parent != SUBSET and "__pycache__" not in p.parts}
    assert present == set(listed) | {"model/manifest.json", "fbank/manifest.json"}
    total = sum(p.stat().st_size for p in SUBSET.rglob("*") if p.is_file())
    assert total < 10_000_000, f"the subset grew to {total / 1e6:.1f} MB"


def test_golden_root_follows_ssast_golden(monkeypatch, tmp_path):
    monkeypatch.setenv("SSAST_GOLDEN", str(SUBSET))
    assert golden_root() == SUBSET and golden.is_subset()
    assert golden.model_manifest()["subset"]["cases"] == list(golden.model_manifest()["cases"])
    monkeypatch.setenv("SSAST_GOLDEN", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SSAST_GOLDEN"):
        golden_root()


def test_safetensors_reader_matches_the_library():
    from safetensors.numpy import load_file

    for path in sorted((SUBSET / "model").rglob("*.safetensors")):
        want, got = load_file(path), golden.read_safetensors(path)
        assert want.keys() == got.keys(), path
        for k in want:
            assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), (path, k)


def _full_set():
    root = golden_root()
    if root.resolve() == SUBSET.resolve():
        pytest.skip("only the subset is here: no full set to compare it with")
    return root


def test_subset_is_made_from_the_full_set():
    """make_subset.py over the full set gives exactly the committed subset."""
    root = _full_set()
    spec = importlib.util.spec_from_file_location("make_subset", SUBSET / "make_subset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files = mod.build(root)
    for rel, data in files.items():
        assert mod.same_content(rel, (SUBSET / rel).read_bytes(), data), rel
    assert set(files) == set(_listed_files()) | {"model/manifest.json", "fbank/manifest.json"}


@pytest.mark.slow
def test_parity_on_the_subset_alone():
    """The parity tests that read what the subset changes, on the subset alone."""
    _full_set()
    env = dict(os.environ, SSAST_GOLDEN=str(SUBSET))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *SUBSET_TESTS], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=900)
    tail = res.stdout[-3000:] + res.stderr[-2000:]
    assert res.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail, tail
