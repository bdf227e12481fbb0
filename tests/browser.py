"""Pages opened in Debian's chromium (scripts/browser.sh installs it) through Playwright.

Playwright's own browser download is not reachable here and not needed: it launches the
system's chromium by path. A page that fails a test leaves its screenshot in the test's
folder (`open_page(..., keep=...)`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

VIEWPORT = {"width": 1400, "height": 1000}


def chromium_path() -> str:
    """Where Debian's chromium is; the tests cannot run without it."""
    path = shutil.which("chromium")
    assert path, "Debian's chromium is needed: scripts/browser.sh installs it"
    return path


@contextmanager
def open_page(url: str, keep: Path | None = None) -> Iterator[Page]:
    """`url` loaded in a fresh headless chromium; on a failure inside, a full-page screenshot at `keep`."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            page.goto(url, wait_until="load")
            try:
                yield page
            except BaseException:
                if keep is not None:
                    page.screenshot(path=keep, full_page=True)
                raise
        finally:
            browser.close()
