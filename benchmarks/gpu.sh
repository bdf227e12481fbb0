#!/usr/bin/env bash
# The GPU benchmarks in one go, on a machine with an NVIDIA GPU, from the repo root:
#   bash benchmarks/gpu.sh            # install what is lacking, then run every benchmark
#   bash benchmarks/gpu.sh --dry-run  # say what it would install, from which wheels and parts
# Each benchmark's output goes to $OUT/<name>.log and its JSON figures (its last JSON line)
# to $OUT/<name>.json ($OUT: /tmp/winnow-gpu unless set). A failing benchmark is named at
# the end, and the next one runs all the same. The machine's own python3 (or $PYTHON) is
# used, with what it lacks of the benchmarks' requirements (benchmarks/missing.py: what they
# measure, never Prefect, boto3 or moto) pip-installed one by one, so one that cannot be
# installed does not stop the others: from the wheels in $WHEELS (.whl/) where that folder
# exists (a machine that reaches no package registry), else from the registry.
#
# A wheel too large to carry whole (onnxruntime-gpu 1.31.1's is 256 MB; a device call
# carries 64 MiB) travels as parts made by `bash benchmarks/carry.sh WHEEL`:
# $WHEELS/NAME.whl.part-00, -01, ... and $WHEELS/NAME.whl.sha256. They are put back together
# with cat and checked against the sha256 before anything is installed; a wheel that does
# not match is removed and named.
set -u
python=${PYTHON:-python3}
out=${OUT:-/tmp/winnow-gpu}
wheels_dir=${WHEELS:-.whl}
dry_run=0
[ "${1:-}" = "--dry-run" ] && dry_run=1
export PYTHONUNBUFFERED=1

carried_ok=1
assemble() {  # put every carried wheel back together (in --dry-run: only check it)
  local sums wheel name parts
  for sums in "$wheels_dir"/*.whl.sha256; do
    [ -e "$sums" ] || continue
    wheel=${sums%.sha256}
    name=$(basename "$wheel")
    parts=("$wheel".part-*)
    if [ ! -e "${parts[0]}" ] && [ ! -e "$wheel" ]; then
      echo "gpu.sh: $name: no parts and no wheel"
      carried_ok=0
      continue
    fi
    if [ -e "${parts[0]}" ] && [ "$(cat "${parts[@]}" | sha256sum | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$sums")" ]; then
      echo "gpu.sh: $name: ${#parts[@]} parts, sha256 ok"
      [ "$dry_run" -eq 0 ] && [ ! -e "$wheel" ] && cat "${parts[@]}" > "$wheel"
    elif [ ! -e "${parts[0]}" ] && [ "$(sha256sum < "$wheel" | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$sums")" ]; then
      echo "gpu.sh: $name: whole, sha256 ok"
    else
      echo "gpu.sh: $name: sha256 MISMATCH, not installed"
      [ "$dry_run" -eq 0 ] && rm -f "$wheel"
      carried_ok=0
    fi
  done
}

providers() {
  "$python" -c "import onnxruntime as o; print(o.get_available_providers())" || echo "gpu.sh: no onnxruntime"
}

mapfile -t lacking < <("$python" -m benchmarks.missing || echo "gpu.sh: cannot tell what is missing" >&2)
wheels=()
[ -d "$wheels_dir" ] && wheels=(--no-index --find-links "$wheels_dir")
if [ "$dry_run" -eq 1 ]; then
  echo "gpu.sh --dry-run: $python lacks ${#lacking[@]} of the benchmarks' requirements:"
  for requirement in "${lacking[@]}"; do
    echo "  $requirement (pip install ${wheels[*]:-from the registry} '$requirement')"
  done
  echo "  onnxruntime-gpu for CUDA 13 (onnxruntime_gpu-1.31.1-cp312-...whl, 256 MB) travels in"
  echo "  parts of at most 60 MiB: bash benchmarks/carry.sh WHEEL $wheels_dir (5 parts)"
  assemble
  echo "gpu.sh --dry-run: then the benchmarks embed, train, embed_e2e, embed_e2e_nvjpeg, inspect_nvjpeg, inspect and select, into $out"
  [ "$carried_ok" -eq 1 ]
  exit
fi

mkdir -p "$out"
nvidia-smi || echo "gpu.sh: nvidia-smi failed or is missing"
providers
assemble
if [ "${#lacking[@]}" -gt 0 ]; then
  echo "gpu.sh: $python lacks: ${lacking[*]}"
  for requirement in "${lacking[@]}"; do
    "$python" -m pip install --quiet --retries 0 --timeout 15 "${wheels[@]}" "$requirement" \
      || echo "gpu.sh: pip could not install $requirement"
  done
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
# JPEGs on disk to embeddings through the whole pipeline (the host's cores decode), with NVML's
# utilisation of the GPU during it: what the model-alone figures above hide.
bench embed_e2e benchmarks.embed_e2e --device cuda --images 4096 --batch-size 256
# The same with the JPEGs decoded on the GPU (nvJPEG through nvImageCodec), and the host's
# CPU-ms an image that leaves, against Pillow's, with 1 and 8 decoding processes.
bench embed_e2e_nvjpeg benchmarks.embed_e2e --device cuda --images 4096 --batch-size 256 --jpeg-decoder nvimgcodec
bench inspect_nvjpeg benchmarks.inspect --images 4096 --workers 1,8 --jpeg-decoder nvimgcodec
bench inspect benchmarks.inspect --images 4096 --workers 1,8
# select has no device option either: its torch form runs on the GPU when there is one.
# 20 naive picks, as the README's million-row figures (the naive form is slow there).
bench select benchmarks.select --rows 1000000 --picks 10000 --baseline-picks 20

if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu.sh: failed: ${failed[*]} (see $out/<name>.log)"
  exit 1
fi
echo "gpu.sh: every benchmark ran; figures in $out/*.json"
