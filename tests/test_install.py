"""The install paths of docs/install.md, as a user takes them.

The wheel is built once, without build isolation (`pip wheel --no-build-isolation --no-deps .`,
reusing the objects of the in-place build), and must hold the compiled extension and the
package metadata. Two fresh venvs get `pip install torch==2.13.0` (the CPU wheel on local disk),
then the wheel with its declared dependencies:
* the first runs the CLI end to end: `ssast-fast demo --smoke` where espeak-ng is installed
  (`ssast-fast smoke` otherwise);
* the second imports the package and its extension, and asks for a Triton kernel without the
  `triton` extra installed: a clear error names the extra.
Everything runs outside the source tree, so only the installed package can be imported.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"  # the CPU wheel on local disk; an unpinned torch would be CUDA
pytestmark = pytest.mark.slow


def _run(cmd: list, cwd: Path, timeout: int = 600, env: dict | None = None) -> str:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _clean_env(venv: Path | None = None) -> dict:
    """The environment of a user's shell: no test-suite variables, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TRITON_INTERPRET", "SSAST_FAST_PURE")}
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
          "-w", out, "."], cwd=REPO, env=_clean_env())
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_venv(root: Path, wheel: Path) -> Path:
    """python -m venv, then the pinned CPU torch, then the wheel and its dependencies."""
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=root)
    py = venv / "bin" / "python"
    env = _clean_env(venv)
    _run([py, "-m", "pip", "install", "-q", TORCH_PIN], cwd=root, env=env)
    _run([py, "-m", "pip", "install", "-q", wheel], cwd=root, env=env)
    versions = _run([py, "-c", "import torch; print(torch.__version__)"], cwd=root, env=env)
    assert versions.startswith("2.13.0"), f"installing the wheel changed torch: {versions}"
    return venv


def test_wheel_holds_extension_and_metadata(wheel):
    assert "-cp3" in wheel.name and "linux" in wheel.name, f"not a platform wheel: {wheel.name}"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        entry = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert any(n.startswith("ssast_fast/_C") and n.endswith(".so") for n in names), names
    assert not any(n.startswith(("tests/", "benchmarks/", "csrc/")) for n in names)
    requires = meta.get_all("Requires-Dist")
    for dep in ("torch>=", "numpy", "soundfile", "tqdm", "matplotlib"):
        assert any(r.startswith(dep) for r in requires), (dep, requires)
    assert not any(r.startswith("torch") and "==" in r for r in requires), requires
    assert any("triton" in r and "extra" in r for r in requires), requires
    assert "ssast-fast = ssast_fast.cli:main" in entry


def test_fresh_venv_runs_the_cli(wheel, tmp_path):
    venv = _fresh_venv(tmp_path, wheel)
    env = _clean_env(venv)
    cli = venv / "bin" / "ssast-fast"
    if shutil.which("espeak-ng"):
        out = _run([cli, "demo", "--smoke", "--out", tmp_path / "demo", "--threads", "2"],
                   cwd=tmp_path, env=env, timeout=900)
        assert "test accuracy, pretrained + fine-tuned" in out, out[-2000:]
        assert (tmp_path / "demo" / "results.json").is_file()
    else:  # espeak-ng is a system package (docs/install.md); without it the demo cannot run
        out = _run([cli, "smoke"], cwd=tmp_path, env=env)
        assert out.strip(), "ssast-fast smoke printed nothing"


def test_wheel_imports_in_another_fresh_venv(wheel, tmp_path):
    venv = _fresh_venv(tmp_path, wheel)
    code = (
        "import torch, ssast_fast\n"
        "from ssast_fast import _ext\n"
        "assert _ext.available(), 'compiled extension did not load'\n"
        "import ssast_fast._C as c\n"
        "assert c.__file__.startswith(%r), c.__file__\n"
        "from ssast_fast.ops.attention import attention\n"
        "q = torch.randn(1, 1, 4, 64)\n"
        "try:\n"
        "    attention(q, q, q, backend='triton')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    ) % str(venv)
    out = _run([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=_clean_env(venv))
    assert "ssast-fast[triton]" in out, f"no install hint for the missing triton extra: {out!r}"
