"""Faults for S3 tests, made with real servers and real sockets (no mocks).

`FaultProxy` is a small HTTP proxy on 127.0.0.1 in front of an S3 server: it forwards every
request unchanged, except that requests to a chosen path can be answered with S3's
`503 SlowDown`, or have their connection reset. It records what it saw, so a test can count
attempts or see which requests a client made. `MotoProcess` runs a second moto server in
its own process, for settings (IAM authentication) that are process-wide in moto.
"""

from __future__ import annotations

import http.client
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

Fault = Literal["slowdown", "reset", "reset_mid_body"]

SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
# Not forwarded: they describe one hop, not the request (RFC 9110 7.6.1), or are handled here.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it, and what it did with it."""

    method: str
    path: str  # without the query
    query: str
    headers: Mapping[str, str]  # lower-case names
    fault: Fault | None


class FaultProxy:
    """A threaded HTTP proxy from 127.0.0.1:<port> to `upstream` (http://host:port)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self._lock = threading.Lock()
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._seen: list[Seen] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail(self, path: str, *faults: Fault) -> None:
        """Answer the next requests to `path` (e.g. '/bucket/key', no query) with these faults,
        one request each, in order; later requests to it are forwarded."""
        with self._lock:
            self._faults[path].extend(faults)

    def seen(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if path is None or s.path == path]

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._seen.append(seen)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _reset(self) -> None:
                # SO_LINGER 0: close() sends RST instead of FIN, as a dropped connection does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def _proxy(self) -> None:
                path, _, query = self.path.partition("?")
                body = self._body()
                fault = proxy._next_fault(path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                proxy._record(Seen(self.command, path, query, headers, fault))
                if fault == "reset":
                    self._reset()
                    return
                if fault == "slowdown":
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN_BODY)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN_BODY)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
                try:
                    forwarded = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    forwarded["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=forwarded)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP:
                            self.send_header(name, value)
                    if self.command == "HEAD":
                        length = response.getheader("content-length")
                        self.send_header("Content-Length", length if length is not None else "0")
                        self.end_headers()
                        return
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if fault == "reset_mid_body" and len(data) > 1:
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self._reset()
                        return
                    self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _proxy  # noqa: N815

        return Handler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode} before listening")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listened on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


class MotoProcess:
    """moto's server in a process of its own, on a free port of 127.0.0.1, with extra settings in
    its environment (moto reads most settings, INITIAL_NO_AUTH_ACTION_COUNT among them, once
    per process)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # `python -m moto.server`, from the same environment as the tests.
        moto_server = Path(sys.executable).with_name("moto_server")
        command = ([str(moto_server)] if moto_server.exists() else [sys.executable, "-m", "moto.server"]) + [
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=60, process=self.process)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
