"""report.pdf: report.html printed by headless Chromium.

Printing the page itself is what makes the PDF the same content as the HTML (one layout,
one renderer, print CSS in the page); a second, pure-Python layout would drift from it.
Chromium is a system package (Debian's `chromium`, installed by scripts/browser.sh; the
GPU image's Ubuntu ships it only as a snap), so where none is installed the caller is told
why there is no PDF.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# Names Chromium goes by on Debian, Ubuntu (non-snap builds) and Google's packages.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

PRINT_TIMEOUT_SECONDS = 180


def find_chromium() -> str | None:
    """The path of the first Chromium on PATH, or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def print_pdf(html: Path, pdf: Path) -> str | None:
    """Print `html` to `pdf`. Returns None when written, else why not (never raises)."""
    browser = find_chromium()
    if browser is None:
        return f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)})"
    # A fresh profile a call: concurrent runs must not share Chromium's profile lock.
    with tempfile.TemporaryDirectory(prefix="winnow-chromium-") as profile:
        command = [
            browser,
            "--headless",
            # Chromium's sandbox needs user namespaces, which containers and root lack;
            # the page is our own file with no script, so nothing untrusted runs.
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html.resolve().as_uri(),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PRINT_TIMEOUT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{browser} could not print the report: {error}"
    if result.returncode != 0 or not pdf.exists() or pdf.stat().st_size == 0:
        return f"{browser} exited with {result.returncode} and no PDF: {result.stderr.strip()[-500:]}"
    return None
