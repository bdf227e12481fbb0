#!/usr/bin/env bash
# Split a wheel into parts small enough for a device call to carry, with its sha256, for
# benchmarks/gpu.sh to put back together on the GPU machine:
#   bash benchmarks/carry.sh path/to/NAME.whl [FOLDER]
# writes FOLDER/NAME.whl.part-00, -01, ... (at most $PART_SIZE each, 60M unless set) and
# FOLDER/NAME.whl.sha256 (FOLDER: .whl unless given).
set -euo pipefail
wheel=$1
folder=${2:-.whl}
name=$(basename "$wheel")
mkdir -p "$folder"
rm -f "$folder/$name".part-*
split --bytes "${PART_SIZE:-60M}" --numeric-suffixes --suffix-length 2 "$wheel" "$folder/$name.part-"
echo "$(sha256sum < "$wheel" | cut -d' ' -f1)  $name" > "$folder/$name.sha256"
ls "$folder/$name".part-* | wc -l | xargs echo "carry.sh: $name in parts:"
