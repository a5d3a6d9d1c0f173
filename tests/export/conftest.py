"""Export test fixtures.

The ``export`` extra (onnx, onnxruntime, onnxscript, transformers) is installed by
scripts/test.sh, so under CI (``CI`` set) a missing package fails the tests that need it;
elsewhere they skip with the install command.
"""
import importlib.util
import os

import pytest

# Never reach the Hub: every folder here is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from export_util import EXPORT_PACKAGES, TEST_SIZES, build_model  # noqa: E402

from ssast_fast.model.encoder import MODEL_SIZES  # noqa: E402


@pytest.fixture
def export_deps():
    missing = [p for p in EXPORT_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        msg = (f"the export extra is not installed (missing {missing}): "
               "pip install -r requirements-export.txt (scripts/test.sh does)")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def make_model(monkeypatch):
    """``make_model(kind, n_class=5, seed=0)`` -> (fine-tuned ASTModel in eval mode, task), with the
    test sizes registered in MODEL_SIZES for the test's duration."""
    for name, spec in TEST_SIZES.items():
        monkeypatch.setitem(MODEL_SIZES, name, spec)
    return build_model
