#!/usr/bin/env bash
# Create .venv and install winnow with its test tools. Idempotent: a second call is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and exactly pinned: on machines with a local CPU wheel this takes it
# instead of the several GB of CUDA packages an unpinned resolve would pull.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# bench: the peers benchmarks/quality.py compares with; its parts are tested too.
# gpu-decode: nvImageCodec, whose CPU backend the tests run checks.jpeg_decoder on.
.venv/bin/python -m pip install --quiet -e ".[test,bench,gpu-decode]"
# The lightly package's own loader reads the Lightly layout back in the tests. Without its
# dependencies: they include torchvision (a 5.5 GB CUDA build here), and the loader needs
# numpy alone.
.venv/bin/python -m pip install --quiet --no-deps "lightly==1.6.0"
