"""HTTP handling: routing, authentication, the JSON session API and the consumer endpoint.

The server is the standard library's threading HTTP server, one thread per connection. It keeps
every accepted socket and thread, so the emulator can shut all of them down at once and join
them: closing is prompt even with silent readers or idle keep-alive connections attached.

``rxlens serve --host`` puts this server on a network, so every request is handled in the same
order, the cheap refusals first: the route (404 before any body is read), the key (401 before
any state changes: a request without a key spends no fault budget and rewrites no recorded
header), the body (a bounded ``Content-Length``, read with a timeout), then the handler. Every
refusal is a 4xx JSON body; when a body was left unread the connection closes after the answer,
so its bytes are never taken for a next request. Header and body reads time out, and past
``max_connections`` a new connection gets a 503 at once instead of a thread.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.parser
import email.policy
import ipaddress
import json
import logging
import random
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from rxlens.emulator._errors import CAPACITY_MESSAGE, CapacityError
from rxlens.emulator._frames import control_frame
from rxlens.emulator._lenses import LENSES
from rxlens.emulator._mailbox import EVENT_PROTOCOL, key_from_subprotocols, read_reply
from rxlens.emulator._mailbox import serve as serve_mailbox
from rxlens.emulator._registry import BadConfig, Registry
from rxlens.emulator._sessions import SSE_WRITERS, Reader, Session, SessionDestroyed
from rxlens.emulator._stream import SseStream
from rxlens.emulator._websocket import WebSocket, handshake, is_upgrade, offered_subprotocols

_log = logging.getLogger("rxlens.emulator")

#: URL prefixes of the two API base URLs in use (the SDK's ``/api`` and the docs' ``/v0.5``).
PREFIXES = ("/api", "/v0.5")
_CONSUMER = re.compile(r"^/lens/sessions/consumer/([^/]+)/?$")
#: The session's WebSocket (its ``session_endpoint``): a GET with ``Upgrade: websocket``.
_SESSION_SOCKET = re.compile(r"^/lens/sessions/(lsn-[^/]+)/?$")
_FILE_ROUTE = re.compile(r"^/files/(metadata|delete|download)/(.+)$")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may hold of the emulator (defaults a laptop survives).

    - ``max_connections`` (1,024): open connections (each holds a thread); past it a new
      connection is answered 503 and closed.
    - ``header_timeout`` (10 s): the longest wait for the next piece of a request line or
      header, and for the next request on an idle keep-alive connection.
    - ``body_timeout`` (10 s): the longest wait for the next piece of a request body.
    - ``max_body_bytes`` (16 MiB): the largest request body (uploads included); larger: 413.
    """

    max_connections: int = 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_body_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_body_bytes < 0:
            raise ValueError("max_connections must be >= 1 and max_body_bytes >= 0")
        if not (self.header_timeout > 0 and self.body_timeout > 0):
            raise ValueError("header_timeout and body_timeout must be positive")


def error_body(code: str, message: str, suggestion: str, uid: str) -> dict[str, Any]:
    """The preferred ``{"errors": [{code, message, suggestion, error_uid}]}`` envelope."""
    error = {"code": code, "message": message, "suggestion": suggestion, "error_uid": uid}
    return {"errors": [error]}


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections so it can close them all."""

    daemon_threads = True
    request_queue_size = 1024  # hundreds of readers may connect at once

    def __init__(
        self,
        address: tuple[str, int],
        registry: Registry,
        *,
        limits: ServerLimits | None = None,
        cors_origin: str | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits or ServerLimits()
        self.cors_origin = cors_origin
        self.host = address[0]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self.accepted = 0
        self.refused = 0
        super().__init__(address, Handler)

    @property
    def ws_base(self) -> str:
        """The ``session_endpoint`` base a session record shows."""
        return f"ws://{self.host}:{self.server_address[1]}/api"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._sockets) >= self.limits.max_connections
            if full:
                self.refused += 1
            else:
                self.accepted += 1
        if full:
            self._refuse(request)
            return
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name="rxlens-emulator-conn",
            daemon=True,
        )
        with self._lock:
            self._sockets.add(request)
            self._conn_threads.add(thread)
        thread.start()

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 on the accepting thread (one small write) and close: no thread spent."""
        body = json.dumps(
            error_body(
                "too_many_connections",
                f"The emulator holds {self.limits.max_connections} connections already",
                "close idle connections or raise max_connections",
                self.registry.new_error_uid(),
            )
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            request.settimeout(0.5)
            request.sendall(head + body)
        self.shutdown_request(request)

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


class _Refused(Exception):
    """Internal: the request was answered with an error; stop handling it."""


class _BadEvent(Exception):
    """Internal: a session event the emulator cannot take (400 over REST, an error reply over
    the session's WebSocket)."""


_BODY_NONE, _BODY_JSON, _BODY_RAW = "none", "json", "raw"


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
        # Bounds the wait for each piece of the request line and headers, and the idle wait
        # for the next request of a keep-alive connection (the standard handler then closes).
        self.connection.settimeout(self.server.limits.header_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds no credentials; headers (the key) are never logged.
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    # --- plumbing ---------------------------------------------------------------------------

    def _cors_headers(self) -> dict[str, str]:
        origin = self.server.cors_origin
        if origin is None:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def _send_json(
        self, status: int, body: object, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**self._cors_headers(), **(headers or {})}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, suggestion: str = "") -> None:
        uid = self.server.registry.new_error_uid()
        self._send_json(status, error_body(code, message, suggestion, uid))

    def _refuse(self, status: int, code: str, message: str, suggestion: str = "") -> _Refused:
        """Answer an error and close the connection if a request body is left unread."""
        if self._body_pending():
            self.close_connection = True
        self._error(status, code, message, suggestion)
        return _Refused()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard handler's own refusals (bad request line, header too long, unknown
        method) as the JSON envelope too, never an HTML page."""
        self.close_connection = True
        # A request line the standard handler could not read leaves it thinking "HTTP/0.9",
        # which would send the body without a status line; answer in HTTP/1.1 always.
        self.request_version = "HTTP/1.1"
        short = message or self.responses.get(code, ("error",))[0]
        uid = self.server.registry.new_error_uid()
        data = json.dumps(error_body("bad_request", short, explain or "", uid)).encode()
        with contextlib.suppress(OSError):
            self.send_response(code, short)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.end_headers()

    def _body_pending(self) -> bool:
        if "Transfer-Encoding" in self.headers:
            return True
        length = (self.headers.get("Content-Length") or "").strip()
        return length not in ("", "0")

    def _read_raw_body(self) -> bytes:
        """The request body, bounded and under the body timeout.

        Raises:
            _Refused: after answering a chunked body (411), a malformed or negative length
                (400), a body over ``max_body_bytes`` (413), or one that did not arrive (408).
        """
        limits = self.server.limits
        if "Transfer-Encoding" in self.headers:
            raise self._refuse(
                411, "length_required", "Send the body with a Content-Length, not chunked"
            )
        text = (self.headers.get("Content-Length") or "").strip()
        if not text:
            return b""
        # Digits only: int() would take "-1", "+5", " 1_0 " and choke on 5,000 digits.
        if not text.isascii() or not text.isdigit():
            raise self._refuse(400, "bad_request", "Content-Length is not a non-negative number")
        if len(text) > 18 or int(text) > limits.max_body_bytes:
            raise self._refuse(
                413, "payload_too_large", f"The body is larger than {limits.max_body_bytes} bytes"
            )
        length = int(text)
        if length == 0:
            return b""
        self.connection.settimeout(limits.body_timeout)
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise self._refuse(408, "request_timeout", "The request body did not arrive") from None
        finally:
            self.connection.settimeout(limits.header_timeout)
        if len(raw) < length:  # the client went away mid-body
            self.close_connection = True
            raise _Refused()
        return raw

    def _read_json_body(self) -> dict[str, Any]:
        raw = self._read_raw_body()
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            # RecursionError: a deeply nested document is a bad request, not a crash.
            raise self._refuse(400, "bad_request", "The request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise self._refuse(400, "bad_request", "The request body is not a JSON object")
        return value

    # --- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        try:
            self._handle(method)
        except _Refused:
            pass
        except OSError:
            self.close_connection = True  # the client went away
        except Exception:
            _log.debug("emulator handler error", exc_info=True)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._error(500, "internal_error", "The emulator failed on this request")

    def _handle(self, method: str) -> None:
        registry = self.server.registry
        registry.count("requests")
        url = urlsplit(self.path)
        route = None
        for prefix in PREFIXES:
            if url.path.startswith(prefix + "/"):
                route = url.path[len(prefix) :]
                break
        if route is None:
            raise self._refuse(
                404, "not_found", f"No route {url.path}", "use the /api or /v0.5 base URL"
            )
        if method == "OPTIONS":
            self._preflight()
            return
        consumer = _CONSUMER.match(route)
        found = None if consumer else _find_route(method, route)
        socket_route = _SESSION_SOCKET.match(route) if method == "GET" else None
        if consumer is None and found is None and socket_route is not None:
            self._session_socket(socket_route.group(1))
            return
        if consumer is None and found is None:
            if _find_route_any_method(route):
                raise self._refuse(405, "method_not_allowed", f"{method} is not allowed here")
            raise self._refuse(404, "not_found", f"No route {method} {url.path}")
        if consumer and method != "GET":
            raise self._refuse(405, "method_not_allowed", "Use GET for the consumer endpoint")
        # The key before anything else: no state changes for a request without one.
        if not registry.authorized(self.headers.get("Authorization")):
            registry.count("unauthorized")
            raise self._refuse(
                401,
                "unauthorized",
                "Missing or invalid API key",
                "send the header 'Authorization: Bearer <api key>'",
            )
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if consumer:
            if self._body_pending():
                self.close_connection = True
            session_id = consumer.group(1)
            session = registry.find_session(session_id)
            if session is not None:
                with session.cond:
                    session.consumer_requests += 1
                    session.last_event_id_header = self.headers.get("Last-Event-ID")
                    session.authorization_seen = "Authorization" in self.headers
            self._inject_failure(session)
            self._consumer(session_id, session)
            return
        assert found is not None
        handler, body_kind, argument = found
        body: dict[str, Any] = {}
        raw = b""
        if body_kind == _BODY_JSON:
            body = self._read_json_body()
        elif body_kind == _BODY_RAW:
            raw = self._read_raw_body()
        elif self._body_pending():
            self.close_connection = True  # a body where none belongs: not read, not reused
        session_id = body.get("session_id") or query.get("session_id")
        self._inject_failure(registry.find_session(session_id))
        handler(self, _Request(body, query, argument, raw))

    # --- the session's WebSocket (the session.read mailbox) --------------------------------

    def _session_socket(self, session_id: str) -> None:
        """Upgrade to the session's WebSocket, after the same checks as any request: the
        key (header or subprotocol) first, then the session. Refusals are JSON, never a 101."""
        registry = self.server.registry
        if self._body_pending():
            self.close_connection = True
        # The message object looks names up without regard to case, as HTTP wants.
        headers = cast(Mapping[str, str], self.headers)
        if not is_upgrade(headers):
            raise self._refuse(
                426,
                "upgrade_required",
                "The session endpoint is a WebSocket",
                "connect with a WebSocket client (Upgrade: websocket)",
            )
        offered = offered_subprotocols(headers)
        key = key_from_subprotocols(offered)
        header = self.headers.get("Authorization")
        if header is None and key is not None:
            header = f"Bearer {key}"
        if not registry.authorized(header):
            registry.count("unauthorized")
            raise self._refuse(
                401,
                "unauthorized",
                "Missing or invalid API key",
                "send 'Authorization: Bearer <api key>' or the subprotocol "
                "'authenticationauthorization.bearer.<api key>'",
            )
        session = registry.find_session(session_id)
        if session is None:
            self.close_connection = True
            self._unknown_session(session_id)
            return
        with session.cond:
            session.authorization_seen = "Authorization" in self.headers
        chosen = EVENT_PROTOCOL if EVENT_PROTOCOL in offered else None
        self.close_connection = True  # after the socket, the connection ends
        self.connection.settimeout(None)  # a reader may wait long between requests
        self.wfile.write(handshake(self.headers["Sec-WebSocket-Key"], chosen))
        self.wfile.flush()
        ws = WebSocket(self.rfile, self.wfile, max_size=self.server.limits.max_body_bytes)  # type: ignore[arg-type]
        try:
            reason = serve_mailbox(
                ws,
                self.connection,
                session,
                lambda: registry.mailbox_faults_for(session),
                self._socket_answer,
                registry.closing,
            )
        except Exception:
            # After the 101 an HTTP error page would be garbage on the socket: close it.
            _log.debug("mailbox socket handler error", exc_info=True)
            ws.close(1011, "internal error")
            reason = "internal_error"
        _log.debug("mailbox socket of %s ended: %s", session_id, reason)

    def _socket_answer(self, session: Session, event: Mapping[str, Any]) -> dict[str, Any]:
        """One event over the WebSocket: what the REST route answers, except that
        ``session.status`` is answered with the session record itself."""
        if event.get("type") == "session.status":
            return self._record(session)
        try:
            return self._answer_event(session, event)
        except _BadEvent as exc:
            return {"type": "error", "message": str(exc)}

    def _inject_failure(self, session: Session | None) -> None:
        failure = self.server.registry.take_failure(session)
        if failure is None:
            return
        status, retry_after = failure
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self._send_json(
            status,
            error_body(
                "injected_failure" if status != 429 else "rate_limited",
                f"Injected failure {status}",
                "retry later",
                self.server.registry.new_error_uid(),
            ),
            headers,
        )
        raise _Refused()

    def _preflight(self) -> None:
        """A browser's CORS preflight: allowed with ``cors_origin``, refused (403) without."""
        if self._body_pending():
            self.close_connection = True
        if self.server.cors_origin is None:
            self._error(
                403,
                "cors_not_enabled",
                "Cross-origin requests are not enabled",
                "start the emulator with a CORS origin (rxlens serve --cors ORIGIN)",
            )
            return
        self.send_response(204)
        for name, value in self._cors_headers().items():
            self.send_header(name, value)
        self.send_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
        self.send_header(
            "Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID"
        )
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _unknown_session(self, session_id: object) -> None:
        self.server.registry.count("not_found")
        self._error(
            404,
            "session_not_found",
            f"Unknown session id: {session_id}",
            "check the session id; sessions end when destroyed",
        )

    def _record(self, session: Session) -> dict[str, Any]:
        return session.record(self.server.registry.status_style, self.server.ws_base)

    # --- the consumer stream ----------------------------------------------------------------

    def _consumer(self, session_id: str, session: Session | None) -> None:
        registry = self.server.registry
        if session is None and registry.unknown_session == "404":
            self._unknown_session(session_id)
            return
        faults = registry.faults_for(session)
        chunked = not faults.close_delimited
        # A stream may be silent for long: its writes and liveness checks run without a timeout.
        self.connection.settimeout(None)
        self.send_response(200)
        self.send_header("Content-Type", faults.content_type or "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        for name, value in self._cors_headers().items():
            self.send_header(name, value)
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
            reader_id=registry.new_reader_id(),
            connection=number,
            last_event_id=self.headers.get("Last-Event-ID"),
        )
        stream = SseStream(
            wfile=self.wfile,  # type: ignore[arg-type]
            sock=self.connection,
            session=session,
            config=registry.stream_config,
            plan=registry.plan_for(session, number),
            reader=reader,
            closing=registry.closing,
            chunked=chunked,
        )
        reason = "client_closed"
        try:
            reason = stream.run()
        finally:
            session.detach(reader, reason)

    def _end_at_once(self, session_id: str, chunked: bool) -> None:
        """The other unknown-session variant: 200, ``sse.stream.start``, ``sse.stream.end``."""
        registry = self.server.registry
        registry.count("not_found")
        body = control_frame(
            "sse.stream.start", {"session_id": session_id, "reader_id": registry.new_reader_id()}
        ) + control_frame("sse.stream.end", None)
        try:
            if chunked:
                self.wfile.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
            else:
                self.wfile.write(body)
        except OSError:
            pass

    # --- lenses -----------------------------------------------------------------------------

    def _lens_register(self, req: _Request) -> None:
        config = req.body.get("lens_config")
        if not isinstance(config, dict):
            raise self._refuse(400, "bad_request", "lens_config (an object) is required")
        try:
            lens = self.server.registry.register_lens(config)
        except BadConfig as exc:
            raise self._refuse(
                400, "bad_lens_config", str(exc), "set emulator_lens to a scripted lens name"
            ) from None
        self._send_json(200, lens.record())

    def _lens_metadata(self, req: _Request) -> None:
        lens_id = req.query.get("lens_id", "")
        lenses = self.server.registry.lenses()
        self._send_json(
            200, [lens.record() for lens in lenses if not lens_id or lens.lens_id == lens_id]
        )

    def _lens_info(self, req: _Request) -> None:
        lenses = self.server.registry.lenses()
        self._send_json(
            200,
            {
                "num_lenses": len(lenses),
                "num_custom_lenses": sum(1 for lens in lenses if not lens.builtin),
                "lens_ids": [lens.lens_id for lens in lenses],
            },
        )

    def _lens_by_id(self, lens_id: object) -> Any:
        registry = self.server.registry
        lens = registry.find_lens(lens_id) if isinstance(lens_id, str) else None
        if lens is None:
            registry.count("not_found")
            raise self._refuse(404, "lens_not_found", f"Unknown lens id: {lens_id}")
        return lens

    def _lens_delete(self, req: _Request) -> None:
        lens_id = req.body.get("lens_id")
        lens = self._lens_by_id(lens_id)
        self.server.registry.delete_lens(lens.lens_id)
        self._send_json(200, {"lens_id": lens.lens_id, "lens_status": "LENS_STATUS_DELETED"})

    def _lens_clone(self, req: _Request) -> None:
        lens = self._lens_by_id(req.body.get("lens_id"))
        self._send_json(200, self.server.registry.clone_lens(lens).record())

    def _lens_modify(self, req: _Request) -> None:
        lens = self._lens_by_id(req.body.get("lens_id"))
        params = {k: v for k, v in req.body.items() if k != "lens_id"}
        try:
            self.server.registry.modify_lens(lens, params)
        except BadConfig as exc:
            raise self._refuse(400, "bad_lens_config", str(exc)) from None
        self._send_json(200, lens.record())

    # --- sessions ---------------------------------------------------------------------------

    def _sessions_create(self, req: _Request) -> None:
        registry = self.server.registry
        lens_id = req.body.get("lens_id")
        if not isinstance(lens_id, str) or not lens_id:
            raise self._refuse(400, "bad_request", "lens_id is required")
        lens = self._lens_by_id(lens_id)
        try:
            _, record = registry.create_session(lens, ws_base=self.server.ws_base)
        except CapacityError:
            # A 2xx body: the vendor SDK looks for "errors" only in successful answers.
            self._send_json(200, {"errors": [CAPACITY_MESSAGE]})
            return
        self._send_json(200, record)

    def _sessions_destroy(self, req: _Request) -> None:
        session_id = req.body.get("session_id")
        session = self.server.registry.find_session(session_id)
        if session is None:
            self._unknown_session(session_id)
            return
        session.destroy()
        self._send_json(200, self._record(session))

    def _sessions_metadata(self, req: _Request) -> None:
        registry = self.server.registry
        session_id = req.query.get("session_id", "")
        if session_id:
            session = registry.find_session(session_id)
            if session is None:
                self._unknown_session(session_id)
                return
            sessions = [session]
        else:
            sessions = registry.sessions()
        self._send_json(200, [self._record(s) for s in sessions])

    def _sessions_info(self, req: _Request) -> None:
        sessions = self.server.registry.sessions()
        running = [s for s in sessions if not s.destroyed]
        self._send_json(
            200,
            {
                "num_sessions": len(sessions),
                "num_running_sessions": len(running),
                "session_ids": [s.session_id for s in running],
            },
        )

    def _events_process(self, req: _Request) -> None:
        registry = self.server.registry
        session_id = req.body.get("session_id")
        event = req.body.get("event")
        if not isinstance(session_id, str) or not isinstance(event, dict):
            raise self._refuse(400, "bad_request", "session_id and event (an object) are required")
        session = registry.find_session(session_id)
        if session is None:
            registry.count("not_found")
            self._send_json(200, {"type": "error", "message": f"Unknown session id: {session_id}"})
            return
        try:
            reply = self._answer_event(session, event)
        except _BadEvent as exc:
            raise self._refuse(400, "bad_request", str(exc)) from None
        self._send_json(200, reply)

    def _answer_event(self, session: Session, event: Mapping[str, Any]) -> dict[str, Any]:
        """The reply to one session event, whichever transport carried it.

        Raises:
            _BadEvent: the event's data is not what its type needs.
        """
        event_type = event.get("type")
        event_data = event.get("event_data")
        if event_data is None:
            event_data = {}
        if not isinstance(event_data, dict):
            raise _BadEvent("event.event_data must be an object")
        answer = _EVENTS.get(event_type) if isinstance(event_type, str) else None
        if answer is None:
            return {"type": "error", "message": f"Unknown event type: {event_type}"}
        return {"type": f"{event_type}.response", "event_data": answer(self, session, event_data)}

    def _ev_read(self, session: Session, data: dict[str, Any]) -> object:
        client_id = data.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise _BadEvent("session.read needs event_data.client_id (a string)")
        return read_reply(session, client_id, self.server.registry.mailbox_faults_for(session))

    def _ev_heartbeat(self, session: Session, data: dict[str, Any]) -> object:
        return None

    def _ev_destroy(self, session: Session, data: dict[str, Any]) -> object:
        session.destroy()
        return self._record(session)

    def _ev_status(self, session: Session, data: dict[str, Any]) -> object:
        return self._record(session)

    def _ev_validate(self, session: Session, data: dict[str, Any]) -> object:
        return {
            "is_valid": not session.destroyed,
            "error_messages": ["session is destroyed"] if session.destroyed else [],
        }

    def _ev_get(self, session: Session, data: dict[str, Any]) -> object:
        with session.cond:
            settings = dict(session.settings)
        return {**settings, "session_id": session.session_id, "lens_id": session.lens_id}

    def _ev_update(self, session: Session, data: dict[str, Any]) -> object:
        config = data.get("session_config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise _BadEvent("event_data.session_config must be an object")
        with session.cond:
            session.options.update(config)
        return {"session_id": session.session_id, "updated": True}

    def _ev_modify(self, session: Session, data: dict[str, Any]) -> object:
        with contextlib.suppress(SessionDestroyed):
            session.modify(data)
        return {"session_id": session.session_id, "modified": True}

    def _ev_query(self, session: Session, data: dict[str, Any]) -> object:
        # One scripted answer, drawn from the session's lens (a text lens for the manual one)
        # with its own generator, so a query never shifts the session's stream.
        with session.cond:
            session.queries += 1
            number = session.queries
        spec = session.spec if session.spec.script is not None else LENSES["activity-monitor"]
        assert spec.script is not None
        rng = random.Random(f"{session.seed}:query:{number}")
        result = spec.script(rng, number - 1, session.options)["event_data"]
        return {"response": result.get("response"), "query_id": result.get("query_id")}

    def _ev_input_stream(self, session: Session, data: dict[str, Any]) -> object:
        config = data.get("stream_config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise _BadEvent("event_data.stream_config must be an object")
        with session.cond:
            session.input_stream = dict(data)
            for key in ("window_size", "step_size", "file_id"):
                if key in config:
                    session.options[key] = config[key]
        return {"stream_type": data.get("stream_type"), "status": "ok"}

    def _ev_output_stream(self, session: Session, data: dict[str, Any]) -> object:
        stream_type = str(data.get("stream_type", ""))
        with session.cond:
            session.output_to_sse = stream_type in SSE_WRITERS
        return {"stream_type": stream_type, "status": "ok"}

    # --- files ------------------------------------------------------------------------------

    def _files_upload(self, req: _Request) -> None:
        self._store_upload(req, encoded=False)

    def _files_upload_base64(self, req: _Request) -> None:
        self._store_upload(req, encoded=True)

    def _store_upload(self, req: _Request, *, encoded: bool) -> None:
        content_type = self.headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/form-data"):
            raise self._refuse(400, "bad_request", "Upload the file as multipart/form-data")
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + req.raw)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        part = next((p for p in parts if p.get_filename()), None)
        if part is None:
            raise self._refuse(400, "bad_request", "The upload has no file part")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if encoded:
            try:
                data = base64.b64decode(data, validate=False)
            except (binascii.Error, ValueError):
                raise self._refuse(400, "bad_request", "The file is not base64") from None
        name = str(part.get_filename()).replace("/", "_")
        stored = self.server.registry.store_file(name, data, part.get_content_type())
        self._send_json(200, stored.record())

    def _files_info(self, req: _Request) -> None:
        files = self.server.registry.files()
        self._send_json(
            200, {"num_files": len(files), "num_bytes": sum(len(f.data) for f in files)}
        )

    def _files_metadata(self, req: _Request) -> None:
        files = self.server.registry.files()
        text = req.query.get("limit", "100")
        limit = min(int(text), 1000) if text.isdigit() and int(text) > 0 else 100
        ids = [f.file_id for f in files]
        start = 0
        after, before = req.query.get("after"), req.query.get("before")
        if after is not None:
            start = ids.index(after) + 1 if after in ids else len(ids)
        elif before is not None:
            end = ids.index(before) if before in ids else 0
            start = max(0, end - limit)
        page = files[start : start + limit]
        has_more = start + limit < len(files)
        self._send_json(
            200,
            {
                "data": [f.record() for f in page],
                "has_more": has_more,
                "next_cursor": page[-1].file_id if page and has_more else None,
                "prev_cursor": page[0].file_id if page and start > 0 else None,
            },
        )

    def _file_by_id(self, req: _Request) -> Any:
        registry = self.server.registry
        stored = registry.find_file(req.argument)
        if stored is None:
            registry.count("not_found")
            raise self._refuse(404, "file_not_found", f"Unknown file id: {req.argument}")
        return stored

    def _file_metadata(self, req: _Request) -> None:
        self._send_json(200, self._file_by_id(req).record())

    def _file_delete(self, req: _Request) -> None:
        stored = self._file_by_id(req)
        self.server.registry.delete_file(stored.file_id)
        self._send_json(200, {"file_id": stored.file_id, "is_deleted": True})

    def _file_download(self, req: _Request) -> None:
        stored = self._file_by_id(req)
        self.send_response(200)
        self.send_header("Content-Type", stored.content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(stored.data)))
        for name, value in self._cors_headers().items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(stored.data)


@dataclass(frozen=True, slots=True)
class _Request:
    """What a route handler gets: the JSON body, the query, the path argument, the raw body."""

    body: dict[str, Any]
    query: dict[str, str]
    argument: str
    raw: bytes


_Route = Callable[[Handler, _Request], None]
_ROUTES: dict[tuple[str, str], tuple[_Route, str]] = {
    ("POST", "/lens/register"): (Handler._lens_register, _BODY_JSON),
    ("GET", "/lens/metadata"): (Handler._lens_metadata, _BODY_NONE),
    ("GET", "/lens/info"): (Handler._lens_info, _BODY_NONE),
    ("POST", "/lens/delete"): (Handler._lens_delete, _BODY_JSON),
    ("POST", "/lens/clone"): (Handler._lens_clone, _BODY_JSON),
    ("POST", "/lens/modify"): (Handler._lens_modify, _BODY_JSON),
    ("POST", "/lens/sessions/create"): (Handler._sessions_create, _BODY_JSON),
    ("POST", "/lens/sessions/destroy"): (Handler._sessions_destroy, _BODY_JSON),
    ("GET", "/lens/sessions/metadata"): (Handler._sessions_metadata, _BODY_NONE),
    ("GET", "/lens/sessions/info"): (Handler._sessions_info, _BODY_NONE),
    ("POST", "/lens/sessions/events/process"): (Handler._events_process, _BODY_JSON),
    ("POST", "/files"): (Handler._files_upload, _BODY_RAW),
    ("POST", "/files/base64"): (Handler._files_upload_base64, _BODY_RAW),
    ("GET", "/files/info"): (Handler._files_info, _BODY_NONE),
    ("GET", "/files/metadata"): (Handler._files_metadata, _BODY_NONE),
}
#: Routes with a file id in the path: ``/files/<kind>/<file id>``.
_FILE_ROUTES: dict[tuple[str, str], _Route] = {
    ("GET", "metadata"): Handler._file_metadata,
    ("DELETE", "delete"): Handler._file_delete,
    ("GET", "download"): Handler._file_download,
}
_Answer = Callable[[Handler, Session, dict[str, Any]], object]
_EVENTS: dict[str, _Answer] = {
    "session.status": Handler._ev_status,
    "session.validate": Handler._ev_validate,
    "session.get": Handler._ev_get,
    "session.update": Handler._ev_update,
    "session.modify": Handler._ev_modify,
    "model.query": Handler._ev_query,
    "input_stream.set": Handler._ev_input_stream,
    "output_stream.set": Handler._ev_output_stream,
    "session.read": Handler._ev_read,
    "session.heartbeat": Handler._ev_heartbeat,
    "session.destroy": Handler._ev_destroy,
}


def _find_route(method: str, route: str) -> tuple[_Route, str, str] | None:
    """The handler, body kind and path argument of ``method route``, or ``None``."""
    path = route.rstrip("/")
    exact = _ROUTES.get((method, path))
    if exact is not None:
        return exact[0], exact[1], ""
    match = _FILE_ROUTE.match(path)
    if match:
        handler = _FILE_ROUTES.get((method, match.group(1)))
        if handler is not None:
            return handler, _BODY_NONE, unquote(match.group(2))
    return None


def _find_route_any_method(route: str) -> bool:
    path = route.rstrip("/")
    if any(known == path for _, known in _ROUTES) or _CONSUMER.match(route):
        return True
    match = _FILE_ROUTE.match(path)
    return bool(match and any(kind == match.group(1) for _, kind in _FILE_ROUTES))
