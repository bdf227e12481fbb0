#!/usr/bin/env bash
# The GPU benchmarks in one go, on a machine with an NVIDIA GPU, from the repo root:
#   bash benchmarks/gpu.sh
# Each benchmark's output goes to $OUT/<name>.log and its JSON figures (its last JSON line)
# to $OUT/<name>.json ($OUT: /tmp/winnow-gpu unless set). A failing benchmark is named at
# the end, and the next one runs all the same. The machine's own python3 (or $PYTHON) is
# used, with what it lacks of pyproject.toml pip-installed: from the wheels in .whl/ where
# that folder exists (a machine that reaches no package registry), else from the registry.
set -u
python=${PYTHON:-python3}
out=${OUT:-/tmp/winnow-gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

providers() {
  "$python" -c "import onnxruntime as o; print(o.get_available_providers())" || echo "gpu.sh: no onnxruntime"
}
nvidia-smi || echo "gpu.sh: nvidia-smi failed or is missing"
providers

mapfile -t lacking < <("$python" -m benchmarks.missing || echo "gpu.sh: cannot tell what is missing" >&2)
if [ "${#lacking[@]}" -gt 0 ]; then
  echo "gpu.sh: $python lacks: ${lacking[*]}"
  wheels=()
  [ -d .whl ] && wheels=(--no-index --find-links .whl)
  "$python" -m pip install --quiet --retries 0 --timeout 15 "${wheels[@]}" "${lacking[@]}" \
    || echo "gpu.sh: pip could not install them"
  mapfile -t lacking < <("$python" -m benchmarks.missing)
  [ "${#lacking[@]}" -gt 0 ] && echo "gpu.sh: still lacking (what needs it fails below): ${lacking[*]}"
  providers
fi

failed=()
bench() {  # bench NAME MODULE [ARGUMENT...]
  local name=$1
  shift
  echo "== $name: python -m $*"
  "$python" -m "$@" 2>&1 | tee "$out/$name.log"
  local status=${PIPESTATUS[0]}
  grep '^{' "$out/$name.log" | tail -n 1 >"$out/$name.json"
  if [ "$status" -ne 0 ] || [ ! -s "$out/$name.json" ]; then
    rm -f "$out/$name.json"
    failed+=("$name")
  fi
}

# Shortest first: a device call that runs out of time still brings back the earlier ones.
bench embed benchmarks.embed --device cuda --input-size 224 --batch-sizes 64,256
bench train benchmarks.train --device cuda
# embed_e2e has no device option: its figures are the CPU pipeline's, on this machine's cores.
bench embed_e2e benchmarks.embed_e2e
# select has no device option either: its torch form runs on the GPU when there is one.
# 20 naive picks, as the README's million-row figures (the naive form is slow there).
bench select benchmarks.select --rows 1000000 --picks 10000 --baseline-picks 20

if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu.sh: failed: ${failed[*]} (see $out/<name>.log)"
  exit 1
fi
echo "gpu.sh: every benchmark ran; figures in $out/*.json"
