"""Headless Chromium driven over the DevTools protocol: open a page, evaluate expressions in
it, take a screenshot. What --dump-dom cannot tell: whether each image actually decoded."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect


class Page:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive between the answers; skip them
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == message_id:
                assert "error" not in message, message
                return dict(message["result"])

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def wait_for_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """Chromium writes the DevTools port it picked into its profile folder."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text().splitlines()[0])
        assert process.poll() is None, "chromium exited before it listened"
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


@contextmanager
def open_page(url: str) -> Iterator[Page]:
    """`url` loaded (the load event fired) in a fresh headless Chromium."""
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed: scripts/browser.sh installs it"
    # Chromium's helper processes can still be writing into the profile after the browser
    # exits; a leftover file in /tmp must not fail the test.
    with tempfile.TemporaryDirectory(prefix="winnow-test-chromium-", ignore_cleanup_errors=True) as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,900",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = wait_for_port(Path(profile), process)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
                target = next(t for t in json.load(answer) if t["type"] == "page")
            with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
                page = Page(socket)
                page.call("Page.enable")
                page.call("Page.navigate", url=url)
                while json.loads(socket.recv(timeout=60)).get("method") != "Page.loadEventFired":
                    pass
                yield page
        finally:
            process.terminate()
            process.wait(timeout=30)
