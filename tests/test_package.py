"""Importing the package: works without the compiled extension, and SSAST_FAST_PURE forces pure paths."""
import os
import subprocess
import sys

BLOCK_EXT = """
import importlib.abc, sys, warnings
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "ssast_fast._C":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import ssast_fast, random
    from ssast_fast import _ext
    from ssast_fast.masking import gen_maskid_patch
    random.seed(0)
    assert gen_maskid_patch(512, 400, 64)[:3].tolist() == [1, 2, 3]
ours = [w for w in caught if "compiled extension not available" in str(w.message)]
assert not _ext.available() and len(ours) == 1, [str(w.message) for w in caught]
print("ok")
"""


def run(code: str, **env) -> str:
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True).stdout


def test_import_without_extension_warns_once_and_works():
    assert run(BLOCK_EXT).strip() == "ok"


def test_pure_env_var_forces_pure_path():
    code = "import warnings; warnings.simplefilter('error'); import ssast_fast; from ssast_fast import _ext; print(_ext.available())"
    assert run(code, SSAST_FAST_PURE="1").strip() == "False"
