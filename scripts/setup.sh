#!/usr/bin/env bash
# Idempotent set-up on a fresh machine (Python 3.11, CPU): system packages, venv, pinned
# dependencies, the package (editable) and its C++ extension. One line per stage on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=(pip install -q --disable-pip-version-check)
say() { echo "setup: $*"; }

# espeak-ng (speech for the demo corpus) and sox, through apt when missing.
if command -v espeak-ng >/dev/null 2>&1; then
  say "system packages: espeak-ng present"
else
  SUDO=""
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && SUDO="sudo"; } || true
  if { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; } && command -v apt-get >/dev/null 2>&1; then
    say "system packages: installing espeak-ng and sox (apt-get)"
    ($SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox) >/dev/null \
      || echo "setup: could not install espeak-ng (the demo needs it): apt-get install -y espeak-ng sox" >&2
  else
    echo "setup: espeak-ng is missing and cannot be installed from here (not root, no sudo or no apt);" \
         "the demo needs it: install it with 'sudo apt-get install -y espeak-ng sox' (or 'brew install espeak-ng')" >&2
  fi
fi

if [ -x .venv/bin/python ]; then
  say "venv: .venv (exists)"
else
  say "venv: creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate

# torch first and pinned: nothing after it may resolve another torch.
say "torch 2.13.0 (CPU wheel)"
"${PIP[@]}" torch==2.13.0
say "dependencies: requirements.txt (triton, numpy, soundfile, tqdm, matplotlib, pytest, ...)"
"${PIP[@]}" -r requirements.txt
# The package itself (console script `ssast-fast`), without building the extension here ...
say "package: ssast_fast, editable, console script ssast-fast"
SSAST_FAST_NO_EXT=1 "${PIP[@]}" --no-build-isolation --no-deps -e .
# ... which is built in place, incrementally (ninja), against the installed torch.
say "C++ extension ssast_fast._C: building in place (a few minutes the first time, seconds after; log in build/ext_build.log)"
mkdir -p build
start=$SECONDS
if ! python setup.py build_ext --inplace >build/ext_build.log 2>&1; then
  tail -n 40 build/ext_build.log >&2
  echo "setup: the C++ extension failed to build (full log: build/ext_build.log)" >&2
  exit 1
fi
python -c "import ssast_fast._C" || { echo "setup: the C++ extension failed to import" >&2; exit 1; }
say "ok: extension ready after $((SECONDS - start)) s, $(python -c 'import torch; print("torch", torch.__version__)')"
