"""The CLI's own temporary Prefect server, which dies with the CLI even when the CLI is killed.

Without PREFECT_API_URL, Prefect starts a temporary server in a child process and stops it
at exit; a CLI killed with SIGKILL never reaches its exit, and the server lived on, holding
its port and its SQLite database. The CLI starts the same server itself (uvicorn on
Prefect's app factory, as Prefect does), with the kernel told to end it when the CLI ends:
Linux's parent-death signal. Elsewhere it is stopped at exit, as Prefect's own would be.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# prctl's option that sends the child a signal when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
STARTUP_SECONDS = 120  # the first start on a fresh machine migrates the database


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def end_with(parent: int) -> Callable[[], None] | None:
    """For Popen's preexec_fn: the child gets SIGTERM when `parent` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was arranged
            os._exit(1)

    return arrange


def wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait for the server at `url` to answer; a RuntimeError if it exits or never answers."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the temporary Prefect server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the temporary Prefect server did not answer within {STARTUP_SECONDS} s")


@contextmanager
def temporary_server() -> Iterator[None]:
    """Point Prefect at a server of this process's own while inside, unless PREFECT_API_URL is set.

    Must be entered before Prefect is imported: its settings read PREFECT_API_URL then.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"]
    server_options = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    process = subprocess.Popen(
        [*command, *server_options],
        env={**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"},
        # preexec_fn is unsafe with threads; the CLI has none yet (Prefect is not imported).
        preexec_fn=end_with(os.getpid()),
    )
    try:
        wait_until_healthy(url, process)
        os.environ["PREFECT_API_URL"] = f"{url}/api"
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
