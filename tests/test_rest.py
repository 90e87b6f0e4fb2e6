"""The REST calls (rxlens._rest) against the emulator, every error body shape against a local
server, and the one session-status rule."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from rxlens import LensClient
from rxlens._rest import (
    Lenses,
    Sessions,
    _broken_connection,
    error_from_response,
    normalize_status,
    session_running,
)
from rxlens.emulator import CAPACITY_MESSAGE, LensEmulator
from rxlens.errors import LensAPIError, RxLensError, TransportError


@pytest.fixture(scope="module")
def emu() -> Iterator[LensEmulator]:
    with LensEmulator(seed=7) as emulator:
        yield emulator


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(params=["/api", "/v0.5"])
def base(request: pytest.FixtureRequest, emu: LensEmulator) -> str:
    return emu.root_url + str(request.param)


def api(http: requests.Session, base: str, emu: LensEmulator) -> tuple[Lenses, Sessions]:
    return Lenses(http, base, lambda: emu.headers), Sessions(http, base, lambda: emu.headers)


CONFIG = {
    "lens_name": "test lens",
    "model_pipeline": [{"processor_name": "lens_emulator_processor", "processor_config": {}}],
    "output_streams": [{"stream_type": "server_sent_events_writer"}],
}


# --- against the emulator ------------------------------------------------------------------------


def test_lens_register_metadata_delete(
    http: requests.Session, base: str, emu: LensEmulator
) -> None:
    lenses, _ = api(http, base, emu)
    record = lenses.register(CONFIG)
    lens_id = record["lens_id"]
    assert lens_id.startswith("lns-")
    [meta] = lenses.metadata(lens_id)
    assert meta["lens_config"] == CONFIG and meta["lens_id"] == lens_id
    assert any(m["lens_id"] == lens_id for m in lenses.metadata())
    lenses.delete(lens_id)
    with pytest.raises(LensAPIError) as info:
        lenses.delete(lens_id)
    assert info.value.status == 404 and info.value.code == "lens_not_found"
    assert info.value.error_uid and lens_id in info.value.message


def test_session_lifecycle(http: requests.Session, base: str, emu: LensEmulator) -> None:
    lenses, sessions = api(http, base, emu)
    lens_id = lenses.register(CONFIG)["lens_id"]
    record = sessions.create(lens_id)
    sid = record["session_id"]
    assert sid.startswith("lsn-")
    [meta] = sessions.metadata(sid)
    assert meta["session_id"] == sid and meta["lens_id"] == lens_id
    assert any(m["session_id"] == sid for m in sessions.metadata())
    assert normalize_status(sessions.status(sid)) in {"RUNNING", "REGISTERED", "STARTING"}
    assert sessions.record(sid)["session_id"] == sid
    assert sessions.update(sid, {"window_size": 50}) == {"session_id": sid, "updated": True}
    assert sessions.process_event(sid, "session.validate") == {
        "is_valid": True,
        "error_messages": [],
    }
    assert sessions.lens_config(sid) == CONFIG
    destroyed = sessions.destroy(sid)
    assert normalize_status(destroyed["session_status"]) == "DESTROYED"
    lenses.delete(lens_id)


def test_unknown_session_errors(http: requests.Session, base: str, emu: LensEmulator) -> None:
    _, sessions = api(http, base, emu)
    # {"type": "error", "message": ...} inside a 200
    with pytest.raises(LensAPIError) as info:
        sessions.record("lsn-nope")  # status() turns this one into NotFound
    assert info.value.status == 200
    assert info.value.message == "Unknown session id: lsn-nope"
    # {"errors": [{code, message, suggestion, error_uid}]} with a 404
    with pytest.raises(LensAPIError) as info:
        sessions.destroy("lsn-nope")
    err = info.value
    assert (err.status, err.code) == (404, "session_not_found")
    assert err.suggestion and err.error_uid and "lsn-nope" in str(err)
    with pytest.raises(LensAPIError):
        sessions.metadata("lsn-nope")


def test_wrong_key_is_401_and_never_shown(http: requests.Session, emu: LensEmulator) -> None:
    secret = "sk-this-must-not-leak-42"
    sessions = Sessions(http, emu.base_url, lambda: {"Authorization": f"Bearer {secret}"})
    with pytest.raises(LensAPIError) as info:
        sessions.metadata()
    err = info.value
    assert err.status == 401 and err.code == "unauthorized" and not err.retryable
    assert secret not in str(err) and secret not in repr(err) and secret not in repr(sessions)


def test_missing_key_reported_at_the_first_call(http: requests.Session, emu: LensEmulator) -> None:
    class NoKey(RxLensError):
        pass

    def headers() -> dict[str, str]:
        raise NoKey("no Lens API key: set ATAI_API_KEY")

    sessions = Sessions(http, emu.base_url, headers)  # constructing is fine
    with pytest.raises(NoKey, match="ATAI_API_KEY"):
        sessions.metadata()


def test_capacity_error_inside_a_200(http: requests.Session) -> None:
    with LensEmulator(max_sessions=1) as small:
        sessions = Sessions(http, small.base_url, lambda: small.headers)
        first = sessions.create("lns-emu-manual")
        with pytest.raises(LensAPIError) as info:
            sessions.create("lns-emu-manual")
        assert info.value.status == 200 and info.value.message == CAPACITY_MESSAGE
        sessions.destroy(first["session_id"])


def test_client_like_construction(http: requests.Session, emu: LensEmulator) -> None:
    class Client:
        def __init__(self) -> None:
            self.http = http
            self.base_url = emu.root_url + "/v0.5/"
            self.timeout = (5.0, 5.0)

        def auth_headers(self) -> dict[str, str]:
            return emu.headers

    sessions = Sessions(Client())
    assert sessions.metadata() is not None
    assert "v0.5" in repr(sessions)
    with pytest.raises(TypeError):
        Sessions(http)


def test_unreachable_server_is_a_transport_error(http: requests.Session) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sessions = Sessions(http, f"http://127.0.0.1:{port}/api", lambda: {"Authorization": "Bearer k"})
    with pytest.raises(TransportError) as info:
        sessions.metadata()
    assert info.value.retryable and "Bearer" not in str(info.value)


# --- a pooled connection that breaks as it is reused -------------------------------------------


class DropsReused:
    """A loopback HTTP/1.1 server that answers a connection's first request (keep-alive) and
    closes the connection, unanswered, on its second: a server or proxy closing an idle
    keep-alive connection just as the client reuses it. Records (connection, method, path)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[tuple[int, str, str]] = []
        self.threads: list[threading.Thread] = []
        self.connections: list[socket.socket] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            number += 1
            self.connections.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn:
            reader = conn.makefile("rb")
            for served in range(2):
                line = reader.readline().decode()
                if not line:
                    return
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                reader.read(length)
                method, path = line.split()[:2]
                self.requests.append((number, method, path))
                if served == 1:
                    return  # the second request on a connection: closed, unanswered
                body = b"[]" if method == "GET" else b"{}"
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
                )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() does not)
        self.listener.close()
        self.accepting.join(5)
        assert not self.accepting.is_alive()
        for conn in self.connections:  # a kept-alive connection's thread waits in a read
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(5)
            assert not thread.is_alive()


@pytest.fixture
def drops_reused() -> Iterator[DropsReused]:
    server = DropsReused()
    try:
        yield server
    finally:
        server.close()


def test_a_get_whose_pooled_connection_breaks_is_sent_again(
    http: requests.Session, drops_reused: DropsReused
) -> None:
    sessions = Sessions(
        http, f"http://127.0.0.1:{drops_reused.port}/api", lambda: {"Authorization": "Bearer k"}
    )
    assert sessions.metadata() == []
    assert sessions.metadata() == []  # the pooled connection breaks: sent again on a new one
    paths = [(n, m) for n, m, _ in drops_reused.requests]
    assert paths == [(1, "GET"), (1, "GET"), (2, "GET")]


def test_a_post_whose_connection_breaks_is_not_sent_twice(
    http: requests.Session, drops_reused: DropsReused
) -> None:
    base = f"http://127.0.0.1:{drops_reused.port}/api"
    sessions = Sessions(http, base, lambda: {"Authorization": "Bearer secret-key"})
    assert sessions.metadata() == []
    with pytest.raises(TransportError) as info:
        sessions.process_event("lsn-1", "session.status")
    assert "secret-key" not in str(info.value)
    # The POST may have been acted on before the connection broke: never sent a second time.
    assert [(n, m) for n, m, _ in drops_reused.requests] == [(1, "GET"), (1, "POST")]


@pytest.mark.parametrize(
    ("error", "again"),
    [
        (requests.ConnectionError("reset"), True),
        (requests.ConnectTimeout("slow connect"), False),  # a ConnectionError and a Timeout
        (requests.ReadTimeout("slow answer"), False),
        (requests.exceptions.SSLError("bad certificate"), False),
        (requests.exceptions.ChunkedEncodingError("cut"), False),
    ],
)
def test_only_a_broken_connection_is_worth_a_second_send(
    error: requests.RequestException, again: bool
) -> None:
    assert _broken_connection(error) is again


# --- every error body shape, from a purpose-made server -----------------------------------------


class Scripted(BaseHTTPRequestHandler):
    """Answers every request with the status and body the test put on the server."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        status, body, content_type = self.server.reply  # type: ignore[attr-defined]
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def scripted() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


KEY = "sk-secret-0123456789"


def failure(
    server: ThreadingHTTPServer, http: requests.Session, status: int, body: Any, ctype: str
) -> LensAPIError:
    server.reply = (status, body, ctype)  # type: ignore[attr-defined]
    sessions = Sessions(
        http,
        f"http://127.0.0.1:{server.server_address[1]}/api",
        lambda: {"Authorization": f"Bearer {KEY}"},
    )
    with pytest.raises(LensAPIError) as info:
        sessions.metadata()
    return info.value


JSON = "application/json"
SHAPES: list[tuple[int, Any, str, dict[str, Any]]] = [
    (
        409,
        {
            "errors": [
                {"code": "conflict", "message": "busy", "suggestion": "wait", "error_uid": "err-1"}
            ]
        },
        JSON,
        {"code": "conflict", "message": "busy", "suggestion": "wait", "error_uid": "err-1"},
    ),
    (
        422,
        {"errors": [{"code": "a", "message": "first"}, {"code": "b", "message": "second"}]},
        JSON,
        {"code": "a", "message": "first; second", "suggestion": None, "error_uid": None},
    ),
    (
        503,
        {"errors": ["Failed to allocate lens runner - try stopping an older session!"]},
        JSON,
        {
            "code": None,
            "message": "Failed to allocate lens runner - try stopping an older session!",
        },
    ),
    (403, {"detail": "Not authenticated"}, JSON, {"message": "Not authenticated"}),
    (
        422,
        {"detail": [{"loc": ["body", "lens_id"], "msg": "field required", "type": "missing"}]},
        JSON,
        {"message": "field required"},
    ),
    (
        400,
        {"type": "error", "message": "Unknown session id: lsn-1"},
        JSON,
        {"message": "Unknown session id: lsn-1"},
    ),
    (
        500,
        "<html>Internal Server Error</html>",
        "text/html",
        {"message": "<html>Internal Server Error</html>"},
    ),
    (502, "", "text/plain", {"message": "Bad Gateway"}),
    (418, {"something": "else"}, JSON, {"message": '{"something": "else"}'}),
    (200, {"type": "error", "message": "nope"}, JSON, {"message": "nope"}),
    (200, {"errors": ["full"]}, JSON, {"message": "full"}),
    (200, "not json at all", "text/plain", {}),
]


@pytest.mark.parametrize(("status", "body", "ctype", "expected"), SHAPES)
def test_error_shapes(
    scripted: ThreadingHTTPServer,
    http: requests.Session,
    status: int,
    body: Any,
    ctype: str,
    expected: dict[str, Any],
) -> None:
    err = failure(scripted, http, status, body, ctype)
    assert err.status == status
    for name, value in expected.items():
        assert getattr(err, name) == value, name
    text = str(err)
    assert text.startswith(f"Lens API error {status}") and err.message in text
    assert err.retryable == (status in (408, 429) or status >= 500)


def test_auth_errors_suggest_checking_the_key(
    scripted: ThreadingHTTPServer, http: requests.Session
) -> None:
    err = failure(scripted, http, 401, {"detail": "Invalid API key"}, JSON)
    assert err.suggestion is not None and "ATAI_API_KEY" in err.suggestion


def test_a_body_echoing_the_key_is_masked(
    scripted: ThreadingHTTPServer, http: requests.Session
) -> None:
    err = failure(scripted, http, 401, {"detail": f"bad key {KEY}"}, JSON)
    assert KEY not in str(err) and KEY not in err.message and "***" in err.message


def test_long_text_bodies_are_truncated(
    scripted: ThreadingHTTPServer, http: requests.Session
) -> None:
    err = failure(scripted, http, 500, "x" * 10_000, "text/plain")
    assert len(str(err)) < 1000


def test_error_from_response_directly(
    scripted: ThreadingHTTPServer, http: requests.Session
) -> None:
    scripted.reply = (404, {"errors": [{"message": "gone"}]}, JSON)  # type: ignore[attr-defined]
    response = http.get(f"http://127.0.0.1:{scripted.server_address[1]}/x")
    err = error_from_response(response)
    assert isinstance(err, LensAPIError) and (err.status, err.message) == (404, "gone")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("SESSION_STATUS_RUNNING", "RUNNING"),
        ("LensSessionStatus.SESSION_STATUS_RUNNING", "RUNNING"),
        ("3", "RUNNING"),
        (3, "RUNNING"),
        ("6", "FAILED"),
        ("LensSessionStatus.SESSION_STATUS_FAILED", "FAILED"),
        ("SESSION_STATUS_DESTROYED", "DESTROYED"),
        ("stale", "STALE"),
        ("5", "5"),  # undocumented: left as sent
    ],
)
def test_normalize_status(given: object, expected: str) -> None:
    assert normalize_status(given) == expected


# --- one session-status rule ---------------------------------------------------------------------

# Only "3" (running) and "6" (failed) are documented numeric codes (lens-wire-format); any other
# status rxlens cannot read counts as not running, so following a session stops instead of
# reconnecting to a session it cannot tell is alive.
STATUS_RULE: list[tuple[object, bool]] = [
    ("SESSION_STATUS_RUNNING", True),
    ("LensSessionStatus.SESSION_STATUS_RUNNING", True),
    ("LensSessionStatus.SESSION_STATUS_REGISTERED", True),
    ("SESSION_STATUS_STARTING", True),
    ("3", True),
    (3, True),
    ("SESSION_STATUS_DESTROYED", False),
    ("LensSessionStatus.SESSION_STATUS_FAILED", False),
    ("SESSION_STATUS_STALE", False),
    ("6", False),
    ("5", False),
    ("1", False),
    ("15", False),
    ("SESSION_STATUS_PAUSED", False),
    ("", False),
]


@pytest.mark.parametrize(("status", "running"), STATUS_RULE)
def test_session_running_is_the_one_status_rule(status: object, running: bool) -> None:
    assert session_running(status) is running
    assert session_running(normalize_status(status)) is running


@pytest.mark.parametrize(("status", "running"), STATUS_RULE)
def test_the_client_follows_the_one_status_rule(
    scripted: ThreadingHTTPServer, status: object, running: bool
) -> None:
    # What LensClient.events(follow=True) asks after each sse.stream.end, through a server.
    answer = {"type": "session.status.response", "event_data": {"session_status": status}}
    scripted.reply = (200, answer, JSON)  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{scripted.server_address[1]}/api"
    with LensClient(api_key=KEY, base_url=base) as client:
        assert client._session_running("lsn-1") is running
