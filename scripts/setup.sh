#!/usr/bin/env bash
# Idempotent set-up on a fresh machine (Python 3.11, CPU): venv, pinned deps, C++ extension.
# Usage: source-free; prints the venv's python path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# espeak-ng (speech for the demo corpus) and sox, through apt when missing.
if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox) >/dev/null \
      || echo "setup: could not install espeak-ng (the demo needs it): apt-get install -y espeak-ng sox" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox) >/dev/null \
      || echo "setup: could not install espeak-ng (the demo needs it): sudo apt-get install -y espeak-ng sox" >&2
  else
    echo "setup: espeak-ng is missing and cannot be installed from here (not root, no sudo or no apt);" \
         "the demo needs it: install it with 'sudo apt-get install -y espeak-ng sox' (or 'brew install espeak-ng')" >&2
  fi
fi
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
