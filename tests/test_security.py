"""Security promises (see SECURITY.md): the key never leaks, TLS is verified, redirects drop the
key, recordings are private, ``rxlens serve`` stays on loopback.

Every test runs against real servers on 127.0.0.1 (the emulator, or a small server below), with
a distinctive API key, and searches everything the run produced for it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shutil
import ssl
import stat
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import rxlens.client as client_module
from rxlens import LensClient, RetryPolicy, collect
from rxlens.emulator import Faults, LensEmulator
from rxlens.errors import (
    AuthenticationError,
    ConfigurationError,
    ContentTypeError,
    LensAPIError,
    RxLensError,
    TransportError,
)
from rxlens.events import InferenceResult, StreamEnd
from rxlens.operators import SessionFailed, only_results
from rxlens.sinks import to_jsonl

FAST = RetryPolicy(base=0.01, cap=0.05, max_attempts=3)


def distinctive_key(tag: str) -> str:
    return f"rxk-{tag}-{secrets.token_hex(16)}-secret"


def fragments(key: str) -> list[str]:
    """The key, and its random middle alone (catches a key cut short by truncation)."""
    return [key, key.split("-")[2][:16]]


def assert_absent(key: str, where: str, text: str) -> None:
    assert text, f"nothing captured from {where}: the search would prove nothing"
    for fragment in fragments(key):
        assert fragment not in text, f"the API key appears in {where}"


def describe_error(error: BaseException) -> str:
    """Everything a program might print about an exception: str, repr, traceback, attributes."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(repr(vars(current)) if hasattr(current, "__dict__") else "")
        parts.append(repr(current.args))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def payload(n: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"r{n}"], "query_id": f"q{n}"}}


# --- a small configurable server ---------------------------------------------------------------

SSE_BODY = (
    b'data: {"type":"sse.stream.start","event_data":{"session_id":"lsn-x","reader_id":"r"}}\n\n'
    b'id: 1\ndata: {"type":"inference.result","event_data":{"response":["hello"]}}\n\n'
    b'data: {"type":"sse.stream.end"}\n\n'
)
Route = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    server: Server
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
        self._serve()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._serve()

    def _serve(self) -> None:
        owner = self.server
        with owner.lock:
            owner.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.close_connection = True
        route = owner.route
        try:
            route(self)
        except OSError:
            pass

    def reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        # Headers and body in one write: a client that reads the body with read1 (what has
        # arrived) must not see a status line whose body is still on its way.
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body)
        self.flush_headers()


def serve_lens(h: Handler) -> None:
    """A consumer stream for consumer paths, an empty JSON list for anything else."""
    if "/lens/sessions/consumer/" in h.path:
        h.reply(200, SSE_BODY, "text/event-stream")
    else:
        h.reply(200, b"[]", "application/json")


def echo_key(h: Handler) -> None:
    """A 401 that repeats the Authorization header it got (some servers do)."""
    body = f'{{"detail": "invalid credentials: {h.headers.get("Authorization")}"}}'.encode()
    h.reply(401, body, "application/json")


class Server(ThreadingHTTPServer):
    """HTTP (or, with ``tls``, HTTPS) on 127.0.0.1; records each request's path and headers."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, route: Route, tls: ssl.SSLContext | None = None) -> None:
        self.route = route
        self.tls = tls
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.handshake_failures = 0
        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}/api"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            # The handshake happens here, on the request's own thread.
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with self.changed:
                self.handshake_failures += 1
                self.changed.notify_all()
            return
        try:
            Handler(conn, client_address, self)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-request is not a test failure

    def wait_handshake_failures(self, n: int, timeout: float = 10.0) -> int:
        """Wait until ``n`` handshakes failed (the server counts each on its own thread)."""
        with self.changed:
            self.changed.wait_for(lambda: self.handshake_failures >= n, timeout)
            return self.handshake_failures

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5.0)


@pytest.fixture()
def make_server() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(route: Route = serve_lens, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(route, tls)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()


# --- 1. the key never leaks --------------------------------------------------------------------


class Capture(logging.Handler):
    """Every log record of every logger, formatted with its arguments, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stream = io.StringIO()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(self.format(record) + "\n")


@pytest.fixture()
def all_logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)


def test_the_key_never_leaks_from_a_run(
    tmp_path: Path, all_logs: Capture, make_server: Callable[..., Server]
) -> None:
    key = distinctive_key("run")
    wrong_key = distinctive_key("wrong")
    texts: list[str] = []  # every repr, message and traceback the run produced
    recording = tmp_path / "run.jsonl"
    with (
        warnings.catch_warnings(record=True) as caught,
        LensEmulator(api_key=key, heartbeat_interval=0.1) as emu,
        LensClient(api_key=key, base_url=emu.base_url) as client,
    ):
        warnings.simplefilter("always")
        texts += [repr(client), str(client), repr(client.sessions), repr(client.lenses)]

        # A stream through every kind of trouble, recorded, with its connection states.
        faults = Faults(
            drop_after=3, drops=2, fail_next=2, fail_status=503, malformed="not-json",
            malformed_every=4, ids=True, stall_after=6, stall_for=None, stalls=1,
        )
        sid = emu.create_session(faults=faults)
        states: list[Any] = []
        source = client.connect(sid)
        texts += [repr(source), repr(source.sse)]
        stream = client.events(
            sid, policy=RetryPolicy(base=0.01, cap=0.05), heartbeat_timeout=0.5,
            on_state=states.append,
        ).pipe(to_jsonl(recording))
        done = threading.Event()
        items: list[Any] = []
        subscription = stream.subscribe(items.append, lambda e: done.set(), done.set)
        emu.wait_readers(sid, 1, timeout=10)
        emu.play(sid, [payload(i) for i in range(12)], destroy_when_done=True)
        assert done.wait(20), "the faulty stream did not end"
        subscription.dispose()
        assert sum(isinstance(e, InferenceResult) for e in items) >= 9
        texts += [repr(e) for e in items] + [repr(s) for s in states]
        assert any(s.kind == "backing_off" for s in states), "no reconnect: the run is too easy"

        # A session made and destroyed over REST, and a merge with a session that fails.
        with client.session("lns-emu-manual") as made:
            texts.append(repr(client.sessions.metadata(made)))
        merged_path = tmp_path / "merged.jsonl"
        merged = collect(
            client.merge_sessions(
                [sid, "lsn-0000000000000000"], policy=FAST, check_channel=False
            ).pipe(to_jsonl(merged_path)),
            timeout=20,
        )
        texts += [repr(e) for e in merged]
        assert any(isinstance(e, SessionFailed) for e in merged)

        # Every kind of error: refused key, unknown session, no server, retries exhausted,
        # wrong content type, and a server that echoes the key back in its error.
        errors: list[BaseException] = []
        with LensClient(api_key=wrong_key, base_url=emu.base_url) as wrong:
            errors.append(_error(lambda: collect(wrong.connect(sid), timeout=10)))
            errors.append(_error(lambda: wrong.sessions.metadata(sid)))
            texts.append(repr(wrong))
        errors.append(_error(lambda: collect(client.connect("lsn-missing"), timeout=10)))
        busy = emu.create_session(faults=Faults(fail_next=10, fail_status=429, retry_after=0))
        errors.append(_error(lambda: collect(client.events(busy, policy=FAST), timeout=10)))
        typed = emu.create_session(faults=Faults(content_type="text/html"))
        errors.append(_error(lambda: collect(client.connect(typed), timeout=10)))
        echo = make_server(echo_key)
        with LensClient(api_key=key, base_url=echo.url()) as echoed:
            errors.append(_error(lambda: collect(echoed.connect("lsn-echo"), timeout=10)))
            errors.append(_error(lambda: echoed.sessions.metadata("lsn-echo")))
        assert echo.seen and all(h.get("authorization") == f"Bearer {key}" for _, h in echo.seen)
        closed = LensClient(api_key=key, base_url=f"http://127.0.0.1:{_free_port()}/api")
        errors.append(_error(lambda: collect(closed.connect("lsn-x"), timeout=10)))
        errors.append(_error(lambda: closed.sessions.metadata("lsn-x")))
        closed.close()
        assert all(isinstance(e, RxLensError) for e in errors), errors
        texts += [describe_error(e) for e in errors]

    logs = all_logs.stream.getvalue()
    assert "connecting to" in logs and "urllib3" in logs, "DEBUG logs were not captured"
    assert_absent(key, "DEBUG logs", logs)
    assert_absent(wrong_key, "DEBUG logs", logs)
    joined = "\n".join(texts)
    assert_absent(key, "reprs and error messages", joined)
    assert_absent(wrong_key, "reprs and error messages", joined)
    assert_absent(key, "the recording", recording.read_text() + merged_path.read_text())
    assert_absent(key, "warnings", "\n".join(str(w.message) for w in caught) + " ")


def _error(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("expected an error")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_server_echoing_the_key_is_masked(make_server: Callable[..., Server]) -> None:
    key = distinctive_key("echo")
    echo = make_server(echo_key)
    with LensClient(api_key=key, base_url=echo.url()) as client:
        stream_error = _error(lambda: collect(client.connect("lsn-echo"), timeout=10))
        rest_error = _error(lambda: client.sessions.metadata("lsn-echo"))
    assert isinstance(stream_error, AuthenticationError)
    assert isinstance(rest_error, LensAPIError) and rest_error.status == 401
    for error in (stream_error, rest_error):
        text = describe_error(error)
        assert "invalid credentials" in text  # the server's words are kept...
        assert_absent(key, f"{type(error).__name__}", text)  # ...but not the key


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    code = "import sys; from rxlens.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_key_never_leaks_from_debug_output(tmp_path: Path) -> None:
    key = distinctive_key("cli")
    wrong_key = distinctive_key("cliwrong")
    with LensEmulator(api_key=key, heartbeat_interval=0.1, seed=3) as emu:
        faults = Faults(drop_after=3, drops=1)
        sid = emu.create_session("machine-state", rate=40, seed=3, faults=faults)
        env = {"ATAI_API_KEY": key, "ATAI_API_ENDPOINT": emu.base_url}
        tail = run_cli("--debug", "tail", sid, "-n", "6", env=env)
        record_path = tmp_path / "cli.jsonl"
        record = run_cli("--debug", "record", sid, "-o", str(record_path), "-n", "6", env=env)
        # The key on the command line (it is still never printed), and a refused key.
        flag = run_cli(
            "--debug", "tail", sid, "-n", "2", "--api-key", key, "--base-url", emu.base_url,
            env={},
        )
        refused = run_cli("--debug", "tail", sid, "-n", "2", env={**env, "ATAI_API_KEY": wrong_key})
    for name, result in [("tail", tail), ("record", record), ("--api-key", flag)]:
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        assert "rxlens.sse connecting to" in result.stderr, f"{name}: no debug output"
        assert_absent(key, f"rxlens --debug {name} output", result.stdout + result.stderr)
    assert_absent(key, "a CLI recording", record_path.read_text())
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert_absent(wrong_key, "a refused key's --debug output", refused.stdout + refused.stderr)


# --- 2. TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` only, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture()
def https_server(
    certificate: tuple[Path, Path], make_server: Callable[..., Server]
) -> Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return make_server(serve_lens, tls=context)


def test_tls_is_verified_by_default(https_server: Server) -> None:
    with LensClient(api_key=distinctive_key("tls"), base_url=https_server.url()) as client:
        with pytest.raises(TransportError) as caught:
            collect(client.connect("lsn-x"), timeout=10)
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
        assert not caught.value.retryable  # an untrusted certificate stays untrusted
        # The server counts a failed handshake on its own thread, maybe after the client
        # has given up: wait for the count rather than read it.
        assert https_server.wait_handshake_failures(1) == 1
        # The canonical pipeline gives up at once instead of retrying in a loop.
        with pytest.raises(TransportError):
            collect(client.events("lsn-x", check_channel=False), timeout=10)
        assert https_server.wait_handshake_failures(2) == 2
        with pytest.raises(TransportError):
            client.sessions.metadata("lsn-x")
    assert not https_server.seen  # no request (and no key) ever went over the connection


def test_tls_verification_is_real(
    https_server: Server, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trusting the test certificate (the standard requests variable) lets the same client in:
    # the failure above is the certificate check, not a broken server.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    with LensClient(api_key="k", base_url=https_server.url("localhost")) as client:
        items = collect(client.connect("lsn-x").pipe(only_results()), n=1, timeout=10)
        assert [e.text for e in items] == ["hello"]
    # The name is checked too: the certificate is for localhost, not for 127.0.0.1.
    with (
        LensClient(api_key="k", base_url=https_server.url("127.0.0.1")) as other,
        pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED.*mismatch"),
    ):
        collect(other.connect("lsn-x"), timeout=10)


def test_verify_false_works_and_warns_once(
    https_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CA bundle in the environment must not silently turn verification back on, either.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().cafile or "")
    client_module._insecure_warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LensClient(api_key="k", base_url=https_server.url(), verify=False) as client:
            for _ in range(3):  # three connections, three chances to warn again
                events = collect(client.events("lsn-x", check_channel=False), timeout=10)
                assert isinstance(events[-1], StreamEnd)
            assert client.sessions.metadata("lsn-x") == []
        with LensClient(api_key="k", base_url=https_server.url(), verify=False) as second:
            collect(second.connect("lsn-x"), n=1, timeout=10)
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert len(messages) == 1, messages
    assert "verification is off" in messages[0]


# --- 3. redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("target_host", ["localhost", "127.0.0.1"])
def test_a_redirect_elsewhere_does_not_carry_the_key(
    make_server: Callable[..., Server], target_host: str
) -> None:
    # localhost: another host; 127.0.0.1: the same host on another port (another origin).
    key = distinctive_key("redirect")
    target = make_server(serve_lens)

    def redirect(h: Handler) -> None:
        h.send_response(307)
        h.send_header("Location", f"http://{target_host}:{target.port}{h.path}")
        h.send_header("Content-Length", "0")
        h.end_headers()

    origin = make_server(redirect)
    with LensClient(api_key=key, base_url=origin.url()) as client:
        items = collect(client.connect("lsn-x").pipe(only_results()), n=1, timeout=10)
        assert [e.text for e in items] == ["hello"]  # the redirect was followed...
        client.sessions.metadata("lsn-x")
    assert len(origin.seen) == 2 and all("authorization" in h for _, h in origin.seen)
    assert len(target.seen) == 2
    for path, headers in target.seen:  # ...without the key
        assert "authorization" not in headers, f"the key followed the redirect to {path}"
        assert_absent(key, "the redirected request", repr(headers))


# --- 4. recordings -----------------------------------------------------------------------------


@pytest.fixture()
def open_umask() -> Iterator[None]:
    """umask 0: any permission the code asks for is what the file gets."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_recordings_are_user_only(tmp_path: Path, open_umask: None) -> None:
    from rxlens.cli import main

    with LensEmulator(heartbeat_interval=0.1) as emu:
        sid = emu.create_session("machine-state", rate=50, seed=1)
        with LensClient(api_key=emu.api_key, base_url=emu.base_url) as client:
            library = tmp_path / "library.jsonl"
            collect(client.connect(sid).pipe(to_jsonl(library)), n=3, timeout=10)
        command = tmp_path / "command.jsonl"
        code = main(
            ["record", sid, "-o", str(command), "-n", "3",
             "--api-key", emu.api_key, "--base-url", emu.base_url]
        )
    assert code == 0
    for path in (library, command):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} has mode {oct(mode)}"


# --- 5. rxlens serve ---------------------------------------------------------------------------


def listening_address(port: int) -> str | None:
    """The address a local TCP port listens on, from /proc/net/tcp (None if not found)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("needs /proc/net/tcp")
    for line in table.read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host_hex, port_hex = local.split(":")
        if int(port_hex, 16) == port and state == "0A":  # 0A: LISTEN
            raw = bytes.fromhex(host_hex)[::-1]
            return ".".join(str(b) for b in raw)
    return None


def start_serve(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, Any, str]:
    """Run ``rxlens serve`` on a thread; return (stop, thread, first output or error)."""
    from rxlens.cli import build_parser
    from rxlens.cli._serve import run

    args = build_parser().parse_args(["serve", "--port", "0", *argv])
    stop = threading.Event()
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(run(args, stop=stop))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    for _ in range(200):
        out = capsys.readouterr().out
        if "serving at" in out or outcome:
            return stop, thread, out or repr(outcome[0])
        thread.join(0.025)
    stop.set()
    raise AssertionError("rxlens serve neither served nor failed within 5 s")


def test_serve_binds_loopback_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    from rxlens.cli import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    stop, thread, out = start_serve([], capsys)
    try:
        port = int(out.split("serving at http://127.0.0.1:")[1].split("/")[0])
        assert listening_address(port) == "127.0.0.1"
    finally:
        stop.set()
        thread.join(5.0)


def test_serve_refuses_another_interface_without_a_key() -> None:
    from rxlens.cli import build_parser
    from rxlens.cli._serve import run

    args = build_parser().parse_args(["serve", "--port", "0", "--host", "0.0.0.0"])
    stop = threading.Event()
    stop.set()  # should it serve after all, it returns at once instead of hanging the test
    with pytest.raises(ConfigurationError, match="--api-key") as caught:
        run(args, stop=stop)
    assert "refusing to listen on 0.0.0.0" in str(caught.value)


def test_serve_on_another_interface_with_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    stop, thread, out = start_serve(["--host", "0.0.0.0", "--api-key", "chosen-key"], capsys)
    try:
        assert "serving at" in out
    finally:
        stop.set()
        thread.join(5.0)


# --- 1b. echoing servers: the key masked before any cut, and in no error's chain ---------------
#
# A proxy or a misconfigured gateway may quote the Authorization header it got in any answer,
# not only in a 401. Each route below does, in a different place; the error (or warning) must
# keep the server's words and lose the key, also when the key straddles a length cut, and no
# exception reachable from the error (its __cause__ and __context__, recursively, and their
# attributes: a request's headers, a JSON error's document) may hold the key.

REST_CUT = 500  # characters of a REST error body an error keeps
STREAM_CUT = 4096  # bytes of a stream error body rxlens reads


def reachable_text(root: object, depth: int = 10) -> str:
    """Every string reachable from ``root``: attributes, containers, and, from an exception,
    its message, traceback, ``__cause__`` and ``__context__``, recursively."""
    found: list[str] = []
    seen: set[int] = set()

    def walk(node: object, level: int) -> None:
        if node is None or level > depth or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, (bytes, bytearray)):
            found.append(bytes(node).decode("utf-8", "replace"))
        elif isinstance(node, Mapping):
            for k, v in list(node.items()):
                walk(k, level + 1)
                walk(v, level + 1)
        elif isinstance(node, (list, tuple, set, frozenset)):
            for item in node:
                walk(item, level + 1)
        else:
            if isinstance(node, BaseException):
                found.extend([str(node), repr(node), "".join(traceback.format_exception(node))])
                walk(node.args, level + 1)
                walk(node.__cause__, level + 1)
                walk(node.__context__, level + 1)
            if hasattr(node, "__dict__") and not isinstance(node, type):
                walk(dict(vars(node)), level + 1)

    walk(root, 0)
    return "\n".join(found)


def _echo_route(kind: str) -> Route:
    """A server that quotes the request's Authorization header in the place ``kind`` names."""

    def route(h: Handler) -> None:
        header = h.headers.get("Authorization") or ""
        said = f"you sent {header}"
        if kind == "not_json":
            h.reply(200, f"proxy page: {said}".encode(), "text/plain")
        elif kind == "wrong_shape":
            h.reply(200, json.dumps(said).encode(), "application/json")
        elif kind == "no_session_id":
            h.reply(200, json.dumps({"echo": said}).encode(), "application/json")
        elif kind == "no_session_status":
            answer = {"type": "session.status.response", "event_data": {"echo": said}}
            h.reply(200, json.dumps(answer).encode(), "application/json")
        elif kind == "rest_cut":
            h.reply(500, straddling(header, REST_CUT, "x").encode(), "text/plain")
        elif kind in ("stream_cut_401", "stream_cut_html"):
            body = straddling(header, STREAM_CUT, "\u20ac").encode()
            if kind == "stream_cut_401":
                h.reply(401, body, "text/plain")
            else:
                h.reply(200, body, "text/html")
        else:
            raise AssertionError(kind)

    return route


def straddling(header: str, cut: int, filler: str) -> str:
    """Filler, then ``header``, so that the cut (characters for an ASCII filler, bytes for the
    3-byte euro sign) falls 20 characters into the random middle of the key."""
    inside = header.index("-", header.index("-") + 1) + 1 + 20
    room = cut - inside
    if filler == "x":
        return "x" * room + header
    euros, rest = divmod(room, 3)
    return "\u20ac" * euros + "x" * rest + header


def _assert_no_key(key: str, what: str, found: object) -> None:
    text = reachable_text(found)
    assert_absent(key, what, text)


@pytest.mark.parametrize(
    ("kind", "call", "kept"),
    [
        ("not_json", lambda c: c.sessions.metadata("lsn-echo"), "not JSON"),
        ("wrong_shape", lambda c: c.sessions.metadata("lsn-echo"), "expected a list"),
        ("wrong_shape", lambda c: c.lenses.register({}), "expected a JSON object"),
        ("no_session_id", lambda c: c.sessions.create("lns-echo"), "without a session_id"),
        ("no_session_status", lambda c: c.sessions.status("lsn-echo"), "session_status"),
        ("rest_cut", lambda c: c.sessions.metadata("lsn-echo"), "xxxx"),
    ],
)
def test_an_echoing_rest_server_never_gets_the_key_into_an_error(
    make_server: Callable[..., Server], kind: str, call: Callable[[LensClient], object], kept: str
) -> None:
    key = distinctive_key(kind.replace("_", ""))
    server = make_server(_echo_route(kind))
    with LensClient(api_key=key, base_url=server.url()) as client:
        error = _error(lambda: call(client))
    assert server.seen and server.seen[0][1].get("authorization") == f"Bearer {key}"
    assert isinstance(error, LensAPIError), repr(error)
    assert kept in str(error)  # the server's words (or rxlens's) are kept...
    _assert_no_key(key, f"{kind}: the error and its chain", error)  # ...the key is not


@pytest.mark.parametrize("kind", ["stream_cut_401", "stream_cut_html"])
def test_a_key_straddling_the_stream_body_cut_is_masked(
    make_server: Callable[..., Server], kind: str
) -> None:
    key = distinctive_key("cut")
    server = make_server(_echo_route(kind))
    with LensClient(api_key=key, base_url=server.url()) as client:
        error = _error(lambda: collect(client.connect("lsn-echo"), timeout=10))
    assert server.seen
    assert isinstance(error, AuthenticationError if kind.endswith("401") else ContentTypeError)
    assert "\u20ac\u20ac\u20ac" in str(error)
    _assert_no_key(key, f"{kind}: the error and its chain", error)


def test_the_channel_check_warning_never_quotes_the_key(
    make_server: Callable[..., Server],
) -> None:
    key = distinctive_key("channel")
    server = make_server(_echo_route("not_json"))
    with (
        warnings.catch_warnings(record=True) as caught,
        LensClient(api_key=key, base_url=server.url()) as client,
    ):
        warnings.simplefilter("always")
        client.check_channel("lsn-echo")
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and "could not read the lens metadata" in messages[0]
    assert "proxy page" in messages[0]
    assert_absent(key, "the channel check's warning", messages[0])


def test_no_error_chain_carries_the_request_headers() -> None:
    # No answer at all: requests' own exception holds the prepared request, headers and all;
    # rxlens's error must not keep it as its __context__ (``raise ... from None`` only hides
    # it from the traceback).
    key = distinctive_key("chain")
    with LensClient(api_key=key, base_url=f"http://127.0.0.1:{_free_port()}/api") as client:
        errors = [
            _error(lambda: client.sessions.metadata("lsn-x")),
            _error(lambda: collect(client.connect("lsn-x"), timeout=10)),
        ]
    for error in errors:
        assert isinstance(error, TransportError), repr(error)
        _assert_no_key(key, f"{type(error).__name__} and its chain", error)


def _stall(h: Handler) -> None:
    """A stream that goes silent after its first comment; a REST answer that never comes."""
    if "/lens/sessions/consumer/" in h.path:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(b": hello\n\n")
        h.wfile.flush()
    h.server.release.wait(10)  # type: ignore[attr-defined]


def test_no_timeout_error_chain_carries_the_request_headers(
    make_server: Callable[..., Server],
) -> None:
    key = distinctive_key("stall")
    server = make_server(_stall)
    server.release = threading.Event()  # type: ignore[attr-defined]
    try:
        with LensClient(api_key=key, base_url=server.url(), timeout=(5.0, 0.3)) as client:
            errors = [
                _error(lambda: client.sessions.metadata("lsn-x")),
                _error(lambda: collect(client.connect("lsn-x"), timeout=10)),
            ]
    finally:
        server.release.set()  # type: ignore[attr-defined]
    for error in errors:
        assert isinstance(error, TransportError), repr(error)
        _assert_no_key(key, f"{type(error).__name__} and its chain", error)


class RawEchoServer:
    """A TCP server on 127.0.0.1 that answers every request with bytes that quote its
    Authorization header where no HTTP parser expects them: ``where`` is ``"status_line"`` (a
    broken status line) or ``"chunk_size"`` (a broken chunk-size line of an SSE stream)."""

    def __init__(self, where: str) -> None:
        import socket

        self.where = where
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/api"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                header = b""
                for line in request.split(b"\r\n"):
                    if line.lower().startswith(b"authorization:"):
                        header = line.split(b":", 1)[1].strip()
                if self.where == "status_line":
                    conn.sendall(b"you sent " + header + b"\r\n\r\n")
                else:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                        b"7\r\n: hi\n\n\n\r\n" + b"you sent " + header + b"\r\n"
                    )

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("where", ["status_line", "chunk_size"])
def test_a_key_echoed_where_http_breaks_never_reaches_the_error(where: str) -> None:
    # The HTTP parser's own exception quotes the bytes it could not parse; rxlens's message
    # keeps that reason, so it must mask it too.
    key = distinctive_key(where.replace("_", ""))
    server = RawEchoServer(where)
    try:
        with LensClient(api_key=key, base_url=server.url) as client:
            error = _error(lambda: collect(client.connect("lsn-echo"), timeout=10))
    finally:
        server.close()
    assert isinstance(error, TransportError), repr(error)
    _assert_no_key(key, f"{where}: the error and its chain", error)
