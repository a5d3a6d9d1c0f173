"""Helpers shared by the ops tests and their sm_90 compile scripts (not a test module).

- :func:`compile_kernel`: compile one ``@triton.jit`` kernel for a CUDA target without a GPU
  (ptxas ships with triton), with the divisibility hints the JIT would infer at launch;
- :func:`run_python`, :func:`check_compile_script`, :func:`check_gpu_suite_dry_run`,
  :func:`check_without_triton`: the subprocess checks (compiling needs ``TRITON_INTERPRET``
  unset, so it runs in a child process).
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

INTERPRETER_MESSAGE = "unset TRITON_INTERPRET to compile"


# ---- compiling for a CUDA target -------------------------------------------------------------


def aligned_args(signature: Mapping[str, str]) -> list[str]:
    """The arguments the JIT specializes as multiples of 16 for the model's tensors: pointers
    (16-byte aligned allocations) and the integer strides other than the unit last-dim one
    (compiled as a constexpr 1). Row counts (N_CTX, M) and H stay unconstrained."""
    return [k for k, t in signature.items()
            if t.startswith("*") or (k.startswith("stride_") and t == "i32")]


def compile_kernel(kernel, signature: Mapping[str, str], constexprs: Mapping, arch: int,
                   options: Mapping):
    """``triton.compile`` of ``kernel`` for ``sm_<arch>`` with ``tt.divisibility = 16`` on
    :func:`aligned_args` (without these hints loads are not vectorized or pipelined)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    attrs = {(kernel.arg_names.index(k),): [["tt.divisibility", 16]]
             for k in aligned_args(signature)}
    src = ASTSource(fn=kernel, signature=dict(signature), constexprs=dict(constexprs), attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(options))


def report_compiled(n_kernels: int, arch: int) -> int:
    """Print the summary line :func:`check_compile_script` looks for; the exit status 0."""
    print(f"OK: {n_kernels} kernels compiled for sm_{arch}")
    return 0


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


def check_compile_script(args: list[str], n_kernels: int, arch: int = 90,
                         timeout: int = 600) -> None:
    """Run a compile script (Triton not interpreted); it must report ``n_kernels`` compiled
    (:func:`report_compiled`)."""
    res = run_python(args, timeout)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert f"OK: {n_kernels} kernels compiled for sm_{arch}" in res.stdout, res.stdout


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
