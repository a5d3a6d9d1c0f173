"""Helpers shared by the ops tests (not a test module): the subprocess checks
:func:`run_python`, :func:`check_gpu_suite_dry_run`, :func:`check_without_triton`, and
:func:`spy_launches`. (Compiling the kernels for sm_90 is benchmarks/compile_report.py's job;
tests/ops/test_compile_report.py runs it.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def spy_launches(monkeypatch, tuned: Mapping) -> list[tuple]:
    """Record each launch of the ops' ``TunedKernel``s (``tuned``: name -> kernel) and still run
    it: a list of (name, grid at BLOCK_M=16 / BLOCK_N=32, positional args, keyword args)."""
    launches = []
    for name, kernel in tuned.items():
        def spy(grid, *args, name=name, real=kernel.launch, **kwargs):
            launches.append((name, grid({"BLOCK_M": 16, "BLOCK_N": 32}), args, kwargs))
            return real(grid, *args, **kwargs)

        monkeypatch.setattr(kernel, "launch", spy)
    return launches


# ---- subprocess checks -----------------------------------------------------------------------


def env_without_interpreter() -> dict:
    """This process's environment without ``TRITON_INTERPRET``, the repository on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_python(args: list[str], timeout: int, env: Mapping[str, str] | None = None
               ) -> subprocess.CompletedProcess:
    """``python *args`` in the repository root (default env: :func:`env_without_interpreter`)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(env) if env is not None else env_without_interpreter(),
                          timeout=timeout)


def check_gpu_suite_dry_run(section: str, timeout: int = 300) -> None:
    """``benchmarks/gpu_suite.py --dry-run --only <section>/`` passes, parity and bench rows
    included (on CPU: the suite sets the interpreter itself)."""
    res = run_python([str(REPO / "benchmarks" / "gpu_suite.py"), "--dry-run", "--only",
                      f"{section}/"], timeout)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert f"{section}/parity" in res.stdout and f"{section}/bench" in res.stdout
    assert "all sections passed" in res.stdout


def check_without_triton(setup: str, triton_call: str, timeout: int = 120) -> None:
    """With ``import triton`` failing: ``setup`` (imports, torch-backend checks) runs, and
    ``triton_call`` (a Triton-backend call) raises a RuntimeError that names triton."""
    body = "\n".join(f"    {line}" for line in triton_call.splitlines())
    code = (
        "import sys, torch\n"
        "sys.modules['triton'] = None\n"  # makes `import triton` raise ImportError
        "sys.modules['triton.language'] = None\n"
        f"{setup}\n"
        "try:\n"
        f"{body}\n"
        "except RuntimeError as e:\n"
        "    assert 'triton' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "print('ok')\n"
    )
    res = run_python(["-c", code], timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]
