#!/usr/bin/env bash
# Debian's chromium, for the test that opens the Prefect UI headless. Installed with
# apt-get when missing (as root, or through sudo where that works without a password).
set -euo pipefail
if command -v chromium > /dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif sudo -n true 2> /dev/null; then
  as_root=(sudo -n)
else
  echo "chromium is missing and cannot be installed without root: apt-get install chromium" >&2
  exit 1
fi
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium > /dev/null
