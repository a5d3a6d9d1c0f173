#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite: C++ unit tests, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# The pinned `export` extra (onnx, onnxruntime, onnxscript, transformers): tests/export never skip in CI.
pip install -q --disable-pip-version-check -r requirements-export.txt
cmake -S . -B build/cmake -G Ninja >/dev/null
cmake --build build/cmake >/dev/null
ctest --test-dir build/cmake --output-on-failure
python -m pytest tests -q "$@"
