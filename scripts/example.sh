#!/usr/bin/env bash
# Set up, then curate the example folder shipped in the repo (examples/images).
# Output: winnow-output/images/ (runs/<run-id>/..., latest.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m flows curate --source examples/images --n-samples 10 "$@"
