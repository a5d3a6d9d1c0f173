#!/usr/bin/env bash
# Idempotent set-up on a fresh machine (Python 3.11, CPU): venv, pinned deps, C++ extension.
# Usage: source-free; prints the venv's python path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# torch first and pinned: nothing after it may resolve another torch.
pip install -q --disable-pip-version-check torch==2.13.0
pip install -q --disable-pip-version-check -r requirements.txt
# The package itself (console script `ssast-fast`), without rebuilding the extension ...
SSAST_FAST_NO_EXT=1 pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
# ... which is built in place, incrementally (ninja), against the installed torch.
python setup.py -q build_ext --inplace >/dev/null
python -c "import ssast_fast._C" || { echo "setup: the C++ extension failed to import" >&2; exit 1; }
echo "setup: ok ($(python -c 'import torch; print("torch", torch.__version__)'))"
