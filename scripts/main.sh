#!/usr/bin/env bash
# Set everything up (idempotent) and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m ssast_fast smoke "$@"
