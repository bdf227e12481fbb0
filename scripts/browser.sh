#!/usr/bin/env bash
# Debian's chromium, for the tests that open the Prefect UI and the run report headless and
# for report.pdf, and poppler-utils (pdftoppm) for the test that looks at the PDF's pages.
# Installed with apt-get when missing (as root, or through sudo where that works without a
# password).
set -euo pipefail
if command -v chromium > /dev/null && command -v pdftoppm > /dev/null; then
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
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium poppler-utils > /dev/null
