#!/usr/bin/env bash
# Set everything up (idempotent) and run the main job: the demo (corpus, pretrain, fine-tune vs scratch).
# Options go to `ssast-fast demo` (e.g. --quick, --seed 1, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m ssast_fast demo "$@"   # default output folder: runs/demo
