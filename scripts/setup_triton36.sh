#!/usr/bin/env bash
# Idempotent second venv, .venv-triton36: triton 3.6.0 (the GPU machine's compiler) over the
# main venv's torch 2.13 CPU, for the sm_90 resource report (benchmarks/compile_report.py).
# triton 3.6.0 is installed into the new venv; a .pth file then appends the main venv's
# site-packages (torch, numpy) behind it, so torch is not installed twice. The package runs from
# the source tree. Needs .venv (bash scripts/setup.sh). Prints the venv's python on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV_TRITON36:-.venv-triton36}
if [ ! -x .venv/bin/python ]; then
  echo "setup_triton36: .venv is missing; run 'bash scripts/setup.sh' first" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
site() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
has36="import importlib.metadata as m, sys; sys.exit(m.version('triton') != '3.6.0')"
if ! "$VENV/bin/python" -c "$has36" 2>/dev/null; then
  rm -f "$(site "$VENV/bin/python")/ssast_main_venv.pth"  # pip must not see the main venv's triton
  "$VENV/bin/pip" install -q --disable-pip-version-check triton==3.6.0
fi
site .venv/bin/python > "$(site "$VENV/bin/python")/ssast_main_venv.pth"
"$VENV/bin/python" -c "
import torch, triton
assert triton.__version__ == '3.6.0', triton.__version__
print('setup_triton36: ok (torch', torch.__version__, '+ triton', triton.__version__ + ')')"
echo "$VENV/bin/python"
