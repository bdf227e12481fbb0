#!/usr/bin/env bash
# Set up (the venv, and chromium for the UI test), then lint, type-check and run the whole
# test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy flows tasks models
.venv/bin/python -m pytest "$@"
