"""HTTP handling: routing, authentication, the JSON session API and the consumer endpoint.

The server is the standard library's threading HTTP server, one thread per connection. It keeps
every accepted socket and thread, so the emulator can shut all of them down at once and join
them: closing is prompt even with silent readers or idle keep-alive connections attached.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from rxlens.emulator._errors import CapacityError
from rxlens.emulator._sessions import SSE_WRITERS, Reader, Session, SessionDestroyed
from rxlens.emulator._stream import SseStream

if TYPE_CHECKING:
    from rxlens.emulator._emulator import LensEmulator

_log = logging.getLogger("rxlens.emulator")

#: URL prefixes of the two API base URLs in use (the SDK's ``/api`` and the docs' ``/v0.5``).
PREFIXES = ("/api", "/v0.5")
CAPACITY_MESSAGE = "Failed to allocate lens runner - try stopping an older session!"
_CONSUMER = re.compile(r"^/lens/sessions/consumer/([^/]+)/?$")
_MAX_BODY = 16 * 1024 * 1024


def error_body(code: str, message: str, suggestion: str, uid: str) -> dict[str, Any]:
    """The preferred ``{"errors": [{code, message, suggestion, error_uid}]}`` envelope."""
    error = {"code": code, "message": message, "suggestion": suggestion, "error_uid": uid}
    return {"errors": [error]}


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections so it can close them all."""

    daemon_threads = True
    request_queue_size = 1024  # hundreds of readers may connect at once

    def __init__(self, address: tuple[str, int], emulator: LensEmulator) -> None:
        self.emulator = emulator
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self.accepted = 0
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name="rxlens-emulator-conn",
            daemon=True,
        )
        with self._lock:
            self.accepted += 1
            self._sockets.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_one(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._sockets.discard(request)
                self._conn_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("emulator connection error", exc_info=True)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sockets)

    def abort_all(self) -> None:
        """Shut every open connection down: blocked reads and writes return at once."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join_all(self, timeout: float) -> None:
        with self._lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(timeout)


class Handler(BaseHTTPRequestHandler):
    """Routes one request of the Lens API."""

    protocol_version = "HTTP/1.1"
    server: EmulatorServer

    def version_string(self) -> str:
        return "LensEmulator"

    def setup(self) -> None:
        super().setup()
        # Small frames must leave now, not when Nagle's algorithm decides.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds no credentials; headers (the key) are never logged.
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing ---------------------------------------------------------------------------

    def _send_json(
        self, status: int, body: object, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, suggestion: str = "") -> None:
        emu = self.server.emulator
        self._send_json(status, error_body(code, message, suggestion, emu._new_error_uid()))

    def _read_body(self) -> tuple[dict[str, Any] | None, bool]:
        """The JSON object body (``None`` if empty) and whether it was acceptable."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            return None, False
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None, True
        try:
            value = json.loads(raw)
        except ValueError:
            return None, False
        return (value, True) if isinstance(value, dict) else (None, False)

    # --- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        emu = self.server.emulator
        emu._count("requests")
        url = urlsplit(self.path)
        route = None
        for prefix in PREFIXES:
            if url.path.startswith(prefix + "/"):
                route = url.path[len(prefix) :]
                break
        if route is None:
            self._error(404, "not_found", f"No route {url.path}", "use the /api or /v0.5 base URL")
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body, ok = self._read_body() if method in ("POST", "DELETE") else (None, True)
        if not ok:
            self._error(400, "bad_request", "The request body is not a JSON object")
            return
        body = body or {}
        consumer = _CONSUMER.match(route)
        session_id = (
            consumer.group(1) if consumer else body.get("session_id") or query.get("session_id")
        )
        session = emu._sessions.get(session_id) if isinstance(session_id, str) else None
        has_auth = "Authorization" in self.headers
        if consumer and session is not None:
            with session.cond:
                session.consumer_requests += 1
                session.last_event_id_header = self.headers.get("Last-Event-ID")
                session.authorization_seen = has_auth
        failure = emu._take_failure(session)
        if failure is not None:
            status, retry_after = failure
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            self._send_json(
                status,
                error_body(
                    "injected_failure" if status != 429 else "rate_limited",
                    f"Injected failure {status}",
                    "retry later",
                    emu._new_error_uid(),
                ),
                headers,
            )
            return
        if not self._authorized():
            emu._count("unauthorized")
            self._error(
                401,
                "unauthorized",
                "Missing or invalid API key",
                "send the header 'Authorization: Bearer <api key>'",
            )
            return
        if consumer:
            if method != "GET":
                self._error(405, "method_not_allowed", "Use GET for the consumer endpoint")
                return
            self._consumer(consumer.group(1), session)
            return
        handler = _ROUTES.get((method, route.rstrip("/")))
        if handler is None:
            self._error(404, "not_found", f"No route {method} {url.path}")
            return
        handler(self, body, query)

    def _authorized(self) -> bool:
        value = self.headers.get("Authorization") or ""
        scheme, _, key = value.partition(" ")
        if scheme.lower() != "bearer" or not key:
            return False
        given = key.strip().encode()
        # Compare against every key without stopping early: timing says nothing about a key.
        found = False
        for valid in self.server.emulator._keys:
            found |= hmac.compare_digest(given, valid.encode())
        return found

    def _unknown_session(self, session_id: object) -> None:
        self.server.emulator._count("not_found")
        self._error(
            404,
            "session_not_found",
            f"Unknown session id: {session_id}",
            "check the session id; sessions end when destroyed",
        )

    # --- the consumer stream ----------------------------------------------------------------

    def _consumer(self, session_id: str, session: Session | None) -> None:
        emu = self.server.emulator
        if session is None and emu.unknown_session == "404":
            self._unknown_session(session_id)
            return
        faults = emu._faults_for(session)
        chunked = not faults.close_delimited
        self.send_response(200)
        self.send_header("Content-Type", faults.content_type or "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True  # a stream's end is the connection's end
        if session is None:
            self._end_at_once(session_id, chunked)
            return
        with session.cond:
            session.connections += 1
            number = session.connections
        reader = Reader(
            reader_id=emu._new_reader_id(),
            connection=number,
            last_event_id=self.headers.get("Last-Event-ID"),
        )
        stream = SseStream(
            wfile=self.wfile,  # type: ignore[arg-type]
            sock=self.connection,
            session=session,
            config=emu._stream_config,
            plan=emu._plan_for(session, number),
            reader=reader,
            closing=emu._closing,
            chunked=chunked,
        )
        reason = "client_closed"
        try:
            reason = stream.run()
        finally:
            session.detach(reader, reason)

    def _end_at_once(self, session_id: str, chunked: bool) -> None:
        """The other unknown-session variant: 200, ``sse.stream.start``, ``sse.stream.end``."""
        from rxlens.emulator._frames import control_frame

        emu = self.server.emulator
        emu._count("not_found")
        body = control_frame(
            "sse.stream.start", {"session_id": session_id, "reader_id": emu._new_reader_id()}
        ) + control_frame("sse.stream.end", None)
        try:
            if chunked:
                self.wfile.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
            else:
                self.wfile.write(body)
        except OSError:
            pass

    # --- the JSON API -----------------------------------------------------------------------

    def _lens_register(self, body: dict[str, Any], query: dict[str, str]) -> None:
        config = body.get("lens_config")
        if not isinstance(config, dict):
            self._error(400, "bad_request", "lens_config (an object) is required")
            return
        self._send_json(200, self.server.emulator._register_lens(config).record())

    def _lens_metadata(self, body: dict[str, Any], query: dict[str, str]) -> None:
        lens_id = query.get("lens_id", "")
        lenses = self.server.emulator._lenses_snapshot()
        self._send_json(
            200, [lens.record() for lens in lenses if not lens_id or lens.lens_id == lens_id]
        )

    def _lens_delete(self, body: dict[str, Any], query: dict[str, str]) -> None:
        lens_id = body.get("lens_id")
        lens = self.server.emulator._delete_lens(lens_id) if isinstance(lens_id, str) else None
        if lens is None:
            self.server.emulator._count("not_found")
            self._error(404, "lens_not_found", f"Unknown lens id: {lens_id}")
            return
        self._send_json(200, {"lens_id": lens.lens_id, "lens_status": "LENS_STATUS_DELETED"})

    def _sessions_create(self, body: dict[str, Any], query: dict[str, str]) -> None:
        emu = self.server.emulator
        lens_id = body.get("lens_id")
        if not isinstance(lens_id, str) or not lens_id:
            self._error(400, "bad_request", "lens_id is required")
            return
        lens = emu._find_lens(lens_id)
        if lens is None:
            emu._count("not_found")
            self._error(404, "lens_not_found", f"Unknown lens id: {lens_id}")
            return
        try:
            _, record = emu._create(lens, rate=None, seed=None, count=None, options=None)
        except CapacityError:
            # A 2xx body: the vendor SDK looks for "errors" only in successful answers.
            self._send_json(200, {"errors": [CAPACITY_MESSAGE]})
            return
        self._send_json(200, record)

    def _sessions_destroy(self, body: dict[str, Any], query: dict[str, str]) -> None:
        emu = self.server.emulator
        session = emu._sessions.get(str(body.get("session_id")))
        if session is None:
            self._unknown_session(body.get("session_id"))
            return
        session.destroy()
        self._send_json(200, session.record(emu.status_style, emu._ws_base))

    def _sessions_metadata(self, body: dict[str, Any], query: dict[str, str]) -> None:
        emu = self.server.emulator
        session_id = query.get("session_id", "")
        if session_id:
            session = emu._sessions.get(session_id)
            if session is None:
                self._unknown_session(session_id)
                return
            sessions = [session]
        else:
            sessions = list(emu._sessions.values())
        self._send_json(200, [s.record(emu.status_style, emu._ws_base) for s in sessions])

    def _events_process(self, body: dict[str, Any], query: dict[str, str]) -> None:
        emu = self.server.emulator
        session_id = body.get("session_id")
        event = body.get("event")
        if not isinstance(session_id, str) or not isinstance(event, dict):
            self._error(400, "bad_request", "session_id and event (an object) are required")
            return
        session = emu._sessions.get(session_id)
        if session is None:
            emu._count("not_found")
            self._send_json(200, {"type": "error", "message": f"Unknown session id: {session_id}"})
            return
        event_type = event.get("type")
        event_data = event.get("event_data") or {}
        if not isinstance(event_data, dict):
            event_data = {}
        reply_type = f"{event_type}.response"
        reply: object
        if event_type == "session.status":
            reply = session.record(emu.status_style, emu._ws_base)
        elif event_type == "session.validate":
            reply = {
                "is_valid": not session.destroyed,
                "error_messages": ["session is destroyed"] if session.destroyed else [],
            }
        elif event_type == "session.update":
            session.options.update(event_data.get("session_config") or {})
            reply = {"session_id": session_id, "updated": True}
        elif event_type == "session.modify":
            with contextlib.suppress(SessionDestroyed):
                session.modify(event_data)
            reply = {"session_id": session_id, "modified": True}
        elif event_type == "input_stream.set":
            config = event_data.get("stream_config") or {}
            with session.cond:
                session.input_stream = dict(event_data)
                for key in ("window_size", "step_size", "file_id"):
                    if isinstance(config, dict) and key in config:
                        session.options[key] = config[key]
            reply = {"stream_type": event_data.get("stream_type"), "status": "ok"}
        elif event_type == "output_stream.set":
            stream_type = str(event_data.get("stream_type", ""))
            with session.cond:
                session.output_to_sse = stream_type in SSE_WRITERS
            reply = {"stream_type": stream_type, "status": "ok"}
        else:
            self._send_json(200, {"type": "error", "message": f"Unknown event type: {event_type}"})
            return
        self._send_json(200, {"type": reply_type, "event_data": reply})


_Route = Callable[[Handler, dict[str, Any], dict[str, str]], None]
_ROUTES: dict[tuple[str, str], _Route] = {
    ("POST", "/lens/register"): Handler._lens_register,
    ("GET", "/lens/metadata"): Handler._lens_metadata,
    ("POST", "/lens/delete"): Handler._lens_delete,
    ("POST", "/lens/sessions/create"): Handler._sessions_create,
    ("POST", "/lens/sessions/destroy"): Handler._sessions_destroy,
    ("GET", "/lens/sessions/metadata"): Handler._sessions_metadata,
    ("POST", "/lens/sessions/events/process"): Handler._events_process,
}
