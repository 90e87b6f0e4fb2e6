"""A small scripted HTTP server on 127.0.0.1 for the SSE core's end-to-end tests.

Each incoming request is answered by the next script in the queue (the last one repeats), so a
test says exactly what every connection sees: a status, some bytes, a drop mid-frame, silence.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        # Every connection is closed after its script: say so, as HTTP/1.1 asks, or the client
        # pools it and its next request races the close (a reset instead of what the test
        # scripts; it failed tests 3 times in 50 loaded runs).
        super().send_response(code, message)
        self.send_header("Connection", "close")

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.requests.append({k.lower(): v for k, v in self.headers.items()})
            index = len(owner.requests) - 1
            script = owner.scripts[min(index, len(owner.scripts) - 1)] if owner.scripts else None
        if script is None:
            self.send_error(500, "no script")
            return
        try:
            script(self)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    # -- building blocks for scripts --------------------------------------------------------

    def start_sse(self, *, content_type: str = "text/event-stream", chunked: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self._chunked = chunked

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)
        self.wfile.flush()

    def end(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def drop(self) -> None:
        """Cut the TCP connection without ending the body."""
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def hold(self, seconds: float = 30.0) -> None:
        """Send nothing until the server closes (or the time is up)."""
        self.server.owner.stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer


class ScriptedServer:
    """``with ScriptedServer() as srv: srv.add(script); url = srv.url``."""

    def __init__(self, path: str = "/stream") -> None:
        self.lock = threading.Lock()
        self.scripts: list[Script] = []
        self.requests: list[dict[str, str]] = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}{path}"

    def add(self, *scripts: Script) -> ScriptedServer:
        with self.lock:
            self.scripts.extend(scripts)
        return self

    @property
    def connections(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- ready-made scripts ------------------------------------------------------------------------


def status(code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Script:
    def script(h: Handler) -> None:
        h.send_response(code)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    return script


def sse(*parts: bytes, then: str = "end", chunked: bool = True, **kw: Any) -> Script:
    """Send ``parts`` (each flushed), then ``end`` the body, ``drop`` or ``hold``."""

    def script(h: Handler) -> None:
        h.start_sse(chunked=chunked, **kw)
        for part in parts:
            h.write(part)
        if then == "drop":
            h.drop()
        elif then == "hold":
            h.hold()
        else:
            h.end()

    return script


def frames(ids: range, payload: str = "x") -> bytes:
    return b"".join(b"id: %d\ndata: %s %d\n\n" % (i, payload.encode(), i) for i in ids)
