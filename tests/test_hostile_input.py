"""Hostile input: what a broken or malicious server can send, and what rxlens makes of it.

Every case goes through ``LensClient`` against a real server on 127.0.0.1: the emulator where
it has the fault, else the small purpose-made server below. Each case must end in a clear,
typed outcome (an :class:`~rxlens.errors.RxLensError` subclass, or a
:class:`~rxlens.events.MalformedEvent` in the stream), within memory bounded by
``max_event_bytes``, and the same client must stream a good session afterwards.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from reactivex import operators as ops

from rxlens import LensClient, RetryPolicy, collect
from rxlens.emulator import Faults, LensEmulator
from rxlens.errors import (
    ContentTypeError,
    EventIdTooLong,
    EventTooLarge,
    HTTPStatusError,
    LensAPIError,
    MalformedEventError,
    RetriesExhausted,
    RxLensError,
    StreamClosed,
    TransportError,
)
from rxlens.events import InferenceResult, LensEvent, MalformedEvent, StreamEnd, StreamStart

#: The event size cap every test here runs with (the default is 16 MiB).
CAP = 256 * 1024
#: Peak Python memory a hostile stream may cost, as a multiple of CAP plus a fixed allowance
#: for the HTTP machinery. Measured peaks are about 2 x CAP.
MEMORY_BOUND = 4 * CAP + 1024 * 1024
FAST = RetryPolicy(base=0.01, cap=0.05, max_attempts=3)
BLOCK = b"x" * 65536

START = b'data: {"type":"sse.stream.start","event_data":{"session_id":"lsn-h","reader_id":"r"}}\n\n'
END = b'data: {"type":"sse.stream.end"}\n\n'


def result_frame(n: int, event_id: int | None = None) -> bytes:
    head = b"" if event_id is None else b"id: %d\n" % event_id
    body = b'{"type":"inference.result","event_data":{"response":["ok %d"]}}' % n
    return head + b"data: " + body + b"\n\n"


# --- a hostile server --------------------------------------------------------------------------

Behaviour = Callable[["HostileHandler"], None]


class HostileHandler(BaseHTTPRequestHandler):
    """Answers ``GET .../<name>`` (a consumer stream, or a REST path such as ``metadata``) with
    the behaviour named ``name``."""

    server: _HostileHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        name = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        with owner.lock:
            owner.requests.append((name, {k.lower(): v for k, v in self.headers.items()}))
        behaviour = owner.routes.get(name)
        self.close_connection = True
        if behaviour is None:
            self.send_error(404)
            return
        try:
            behaviour(self)
        except OSError:
            pass  # the client hung up: what every endless behaviour waits for

    def head(self, status: str = "200 OK", **headers: str) -> None:
        """The status line and headers, written raw (any Content-Length, any encoding)."""
        lines = [f"HTTP/1.1 {status}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        with self.server.owner.lock:
            self.server.owner.sent += len(data)

    def forever(self, block: bytes) -> None:
        """Send ``block`` again and again until the client closes or the server stops."""
        while not self.server.owner.stopping.is_set():
            self.send(block)


class _HostileHTTPServer(ThreadingHTTPServer):
    owner: HostileServer
    daemon_threads = False
    block_on_close = True  # server_close joins the handler threads


class HostileServer:
    """A threaded HTTP server on 127.0.0.1 whose routes are behaviours; closes everything."""

    def __init__(self, routes: dict[str, Behaviour]) -> None:
        self.routes = routes
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent = 0
        self.stopping = threading.Event()
        self.server = _HostileHTTPServer(("127.0.0.1", 0), HostileHandler)
        self.server.owner = self
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


# Behaviours ------------------------------------------------------------------------------------


def good(h: HostileHandler) -> None:
    h.head(Content_Type="text/event-stream", Connection="close")
    h.send(START + result_frame(1, 1) + result_frame(2, 2) + END)


def endless_line(h: HostileHandler) -> None:
    h.head(Content_Type="text/event-stream", Connection="close")
    h.send(START + b"data: ")
    h.forever(BLOCK)


def endless_event(h: HostileHandler) -> None:
    h.head(Content_Type="text/event-stream", Connection="close")
    h.send(START)
    h.forever(b"data: " + BLOCK[:1000] + b"\n")


def endless_cr_event(h: HostileHandler) -> None:
    # CR alone ends a line too: the same endless event, in old Mac line endings.
    h.head(Content_Type="text/event-stream", Connection="close")
    h.send(START.replace(b"\n", b"\r"))
    h.forever(b"data: " + BLOCK[:1000] + b"\r")


def huge_length(h: HostileHandler) -> None:
    h.head(Content_Type="text/event-stream", Content_Length=str(10**18))
    h.send(START + result_frame(1, 1) + result_frame(2, 2))


def huge_length_error(h: HostileHandler) -> None:
    h.head("503 Service Unavailable", Content_Type="application/json", Content_Length=str(10**18))
    h.send(b'{"errors": ["overloaded"]}' + b" " * 65536)
    h.forever(BLOCK)


def huge_length_html(h: HostileHandler) -> None:
    h.head(Content_Type="text/html", Content_Length=str(10**18))
    h.send(b"<html><body>captive portal</body></html>")
    h.forever(BLOCK)


def json_instead(h: HostileHandler) -> None:
    body = b'{"detail": "use the websocket endpoint"}'
    h.head(Content_Type="application/json", Content_Length=str(len(body)))
    h.send(body)


def no_content_type(h: HostileHandler) -> None:
    h.head(Connection="close")
    h.send(START + result_frame(1, 1))


def _inflating_forever(h: HostileHandler, encoding: str, wbits: int) -> None:
    # A bomb of unbounded size: every MiB of zeros compresses to about a kilobyte.
    h.head(Content_Type="text/event-stream", Content_Encoding=encoding, Connection="close")
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    h.send(compressor.compress(b"data: "))
    megabyte = bytes(1024 * 1024)
    while not h.server.owner.stopping.is_set():
        h.send(compressor.compress(megabyte) + compressor.flush(zlib.Z_SYNC_FLUSH))


def gzip_bomb(h: HostileHandler) -> None:
    _inflating_forever(h, "gzip", 31)


def deflate_bomb(h: HostileHandler) -> None:
    _inflating_forever(h, "deflate", 15)


def gzip_small(h: HostileHandler) -> None:
    body = gzip.compress(START + result_frame(1, 1) + END)
    h.head(Content_Type="text/event-stream", Content_Encoding="gzip", Content_Length=str(len(body)))
    h.send(body)


def endless_json(h: HostileHandler) -> None:
    h.head(Content_Type="application/json", Connection="close")
    h.send(b'[{"session_id": "')
    h.forever(BLOCK)


def json_bomb(h: HostileHandler) -> None:
    # The REST answer compressed (requests offers gzip there), inflating without end.
    h.head(Content_Type="application/json", Content_Encoding="gzip", Connection="close")
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    h.send(compressor.compress(b'[{"session_id": "'))
    megabyte = b" " * (1024 * 1024)
    while not h.server.owner.stopping.is_set():
        h.send(compressor.compress(megabyte) + compressor.flush(zlib.Z_SYNC_FLUSH))


def frames_then_end(*frames: bytes) -> Behaviour:
    def behaviour(h: HostileHandler) -> None:
        h.head(Content_Type="text/event-stream", Connection="close")
        h.send(START + b"".join(frames) + result_frame(99, 99) + END)

    return behaviour


def huge_ids(h: HostileHandler) -> None:
    # 400 events whose ids are 64 KiB each (each event under CAP): before, resume remembered
    # every id (25 MiB here; 1 MiB ids grew a client by ~400 MiB).
    h.head(Content_Type="text/event-stream", Connection="close")
    h.send(START)
    for n in range(400):
        event_id = b"%06d" % n + b"i" * (64 * 1024)
        h.send(b"id: " + event_id + b"\n" + result_frame(n))
    h.send(END)


def echo_key_at_the_cut(h: HostileHandler) -> None:
    # A proxy that quotes the request's Authorization header in a 401 body, with the key
    # straddling the 4,096 bytes an error keeps of a body (3-byte characters before it, so the
    # text is short enough to be quoted whole).
    key = h.headers.get("Authorization", "").partition(" ")[2].encode()
    body = "\u20ac".encode() * 1364 + key + b"y" * 200
    h.head("401 Unauthorized", Content_Type="text/plain", Content_Length=str(len(body)))
    h.send(body)


DEEP = 40_000  # well past any parser's recursion limit, and under CAP as text


def with_result(response: bytes) -> bytes:
    """A result frame whose ``response`` JSON is given as raw bytes."""
    return b'data: {"type":"inference.result","event_data":{"response":' + response + b"}}\n\n"


HOSTILE_DATA: dict[str, bytes] = {
    # invalid UTF-8 inside a JSON string: replaced by U+FFFD, as the SSE standard says
    "utf8_in_string": with_result(b'["a\xff\xfeb"]'),
    # invalid UTF-8 where JSON syntax goes: the frame is not JSON
    "utf8_in_syntax": b'data: {"type":"inference.result",\xc3\x28"event_data":{}}\n\n',
    # a truncated multi-byte sequence at the end of a string
    "utf8_truncated": with_result(b'["\xe2\x82"]'),
    # NUL inside the JSON: a control character JSON does not allow
    "nul_in_data": with_result(b'["a\x00b"]'),
    # NUL in the id: the SSE standard ignores the id field
    "nul_in_id": b"id: 7\x00\n" + result_frame(1).replace(b"ok 1", b"nul id"),
    # NUL in the event type and in a field name
    "nul_in_type": b"event: mess\x00age\nda\x00ta: x\ndata: {}\n\n",
    "huge_integer": with_result(b'["x",{"A":' + b"9" * 200_000 + b"}]"),
    "huge_exponent": with_result(b'["x",{"A":1e999999}]'),
    # a legal retry: field of 100,000 digits (before: ValueError in the decoder, chunk lost)
    "huge_retry": b"retry: " + b"9" * 100_000 + b"\n\n" + result_frame(1, 1),
    "deep_array": b"data: " + b"[" * (2 * DEEP) + b"\n\n",
    "deep_object": b'data: {"type":"inference.result","event_data":'
    + b'{"a":' * DEEP
    + b"1"
    + b"}" * DEEP
    + b"}\n\n",
}


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    routes: dict[str, Behaviour] = {
        "good": good,
        "endless_line": endless_line,
        "endless_event": endless_event,
        "endless_cr_event": endless_cr_event,
        "huge_length": huge_length,
        "huge_length_error": huge_length_error,
        "huge_length_html": huge_length_html,
        "json_instead": json_instead,
        "no_content_type": no_content_type,
        "gzip_bomb": gzip_bomb,
        "deflate_bomb": deflate_bomb,
        "gzip_small": gzip_small,
        "huge_ids": huge_ids,
        "echo_key_at_the_cut": echo_key_at_the_cut,
    }
    routes.update({name: frames_then_end(frame) for name, frame in HOSTILE_DATA.items()})
    server = HostileServer(routes)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["threads", "asyncio"])
def io(request: pytest.FixtureRequest) -> str:
    """Both I/O designs of ``LensClient``: every case holds for each."""
    param: str = request.param
    return param


@pytest.fixture()
def client(hostile: HostileServer, io: Any) -> Iterator[LensClient]:
    with LensClient(
        api_key="k-hostile", base_url=hostile.base_url, max_event_bytes=CAP, io=io
    ) as c:
        yield c


def events_of(client: LensClient, name: str, **options: Any) -> list[LensEvent]:
    """The canonical pipeline on one route, collected (errors raised)."""
    options.setdefault("policy", FAST)
    options.setdefault("heartbeat_timeout", 5.0)
    return collect(client.events(name, check_channel=False, **options), timeout=20)


def error_of(client: LensClient, name: str, **options: Any) -> BaseException:
    with pytest.raises(RxLensError) as caught:
        events_of(client, name, **options)
    return caught.value


def carries_on(client: LensClient) -> None:
    """The same client still streams a good session."""
    items = events_of(client, "good")
    assert [type(e) for e in items] == [StreamStart, InferenceResult, InferenceResult, StreamEnd]


class PeakMemory:
    """Peak Python memory allocated inside the ``with`` block (tracemalloc)."""

    def __enter__(self) -> PeakMemory:
        self._was_tracing = tracemalloc.is_tracing()
        if not self._was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = tracemalloc.get_traced_memory()[1] - self._base
        if not self._was_tracing:
            tracemalloc.stop()


# --- endless input -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["endless_line", "endless_event", "endless_cr_event"])
def test_endless_input_stops_at_the_cap(
    client: LensClient, hostile: HostileServer, route: str
) -> None:
    with PeakMemory() as memory:
        error = error_of(client, route)
    assert isinstance(error, EventTooLarge), error
    assert error.limit == CAP and error.size > CAP
    assert "max_event_bytes" in str(error)
    assert not error.retryable  # the rest of the event is unknown: reconnecting cannot help
    assert memory.peak < MEMORY_BOUND, f"peak {memory.peak} bytes for a {CAP}-byte cap"
    carries_on(client)


def test_the_default_cap_applies_without_configuration(hostile: HostileServer, io: Any) -> None:
    # The default (16 MiB) is what protects a client nobody configured.
    with LensClient(api_key="k", base_url=hostile.base_url, io=io) as default_client:
        error = error_of(default_client, "endless_line")
    assert isinstance(error, EventTooLarge) and error.limit == 16 * 2**20


# --- lengths and types -------------------------------------------------------------------------


def test_huge_content_length_is_read_as_a_stream(client: LensClient) -> None:
    # Nothing is allocated from the header: the events arrive as they come, and the body that
    # ends short of its length is a broken connection (retryable; given up on here after
    # three attempts).
    source = client.connect("huge_length")
    seen: list[LensEvent] = []
    with PeakMemory() as memory, pytest.raises(TransportError):
        collect(source.pipe(ops.do_action(on_next=seen.append)), timeout=20)
    assert memory.peak < MEMORY_BOUND
    assert [getattr(e, "text", None) for e in seen] == [None, "ok 1", "ok 2"]
    with pytest.raises(RetriesExhausted) as caught:
        events_of(client, "huge_length")
    assert isinstance(caught.value.last_error, TransportError)
    carries_on(client)


def test_huge_content_length_on_an_error_reads_a_bounded_body(
    client: LensClient, hostile: HostileServer
) -> None:
    with PeakMemory() as memory:
        error = error_of(client, "huge_length_error")
    status = error.last_error if hasattr(error, "last_error") else error
    assert isinstance(status, HTTPStatusError) and status.status == 503
    assert status.body is not None and len(status.body) <= 4096 + 64
    assert memory.peak < MEMORY_BOUND
    carries_on(client)


def test_huge_content_length_with_the_wrong_type(client: LensClient) -> None:
    error = error_of(client, "huge_length_html")
    assert isinstance(error, ContentTypeError) and error.content_type == "text/html"
    assert "captive portal" in (error.body or "")
    carries_on(client)


@pytest.mark.parametrize(
    ("route", "content_type"), [("json_instead", "application/json"), ("no_content_type", "")]
)
def test_wrong_content_type_is_a_typed_error_not_retried(
    client: LensClient, hostile: HostileServer, route: str, content_type: str
) -> None:
    before = sum(1 for name, _ in hostile.requests if name == route)
    error = error_of(client, route)
    assert isinstance(error, ContentTypeError) and error.content_type == content_type
    assert not error.retryable
    assert sum(1 for name, _ in hostile.requests if name == route) == before + 1
    carries_on(client)


def test_wrong_content_type_from_the_emulator(lens_emulator: LensEmulator, io: Any) -> None:
    sid = lens_emulator.create_session(faults=Faults(content_type="text/plain; charset=utf-8"))
    with (
        LensClient(api_key=lens_emulator.api_key, base_url=lens_emulator.base_url, io=io) as client,
        pytest.raises(ContentTypeError, match="text/plain"),
    ):
        collect(client.events(sid, policy=FAST), timeout=10)


# --- compression -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["gzip_bomb", "deflate_bomb", "gzip_small"])
def test_a_compressed_stream_is_refused_unread(
    client: LensClient, hostile: HostileServer, route: str
) -> None:
    # rxlens asks for an uncompressed stream and refuses a compressed one without inflating
    # a byte: a bomb costs nothing, and a well-meant gzip stream gets a clear error instead
    # of garbage.
    with PeakMemory() as memory:
        error = error_of(client, route)
    assert isinstance(error, ContentTypeError), error
    assert "Content-Encoding" in str(error) and not error.retryable
    assert memory.peak < MEMORY_BOUND
    asked = [headers for name, headers in hostile.requests if name == route]
    assert asked and all(h.get("accept-encoding") == "identity" for h in asked)
    carries_on(client)


# --- hostile bytes in the data -----------------------------------------------------------------


def data_events(client: LensClient, route: str) -> list[LensEvent]:
    """The events of a route between the start and the closing good result."""
    items = events_of(client, route)
    assert isinstance(items[0], StreamStart) and isinstance(items[-1], StreamEnd)
    assert isinstance(items[-2], InferenceResult) and items[-2].text == "ok 99"  # carried on
    return items[1:-2]


def test_invalid_utf8_in_a_string_becomes_the_replacement_character(client: LensClient) -> None:
    (event,) = data_events(client, "utf8_in_string")
    assert isinstance(event, InferenceResult) and event.text == "a\ufffd\ufffdb"
    (event,) = data_events(client, "utf8_truncated")
    assert isinstance(event, InferenceResult) and event.text == "\ufffd"


def test_invalid_utf8_in_json_syntax_is_malformed(client: LensClient) -> None:
    (event,) = data_events(client, "utf8_in_syntax")
    assert isinstance(event, MalformedEvent) and "_json" in event.errors
    assert "\ufffd" in event.raw


def test_nul_bytes(client: LensClient) -> None:
    (event,) = data_events(client, "nul_in_data")
    assert isinstance(event, MalformedEvent) and "_json" in event.errors
    (event,) = data_events(client, "nul_in_id")
    assert isinstance(event, InferenceResult) and event.text == "nul id" and event.id is None
    (event,) = data_events(client, "nul_in_type")
    # The type keeps its NUL (it is data to the SSE standard); the payload is not JSON.
    assert isinstance(event, MalformedEvent)


def test_nul_in_the_id_never_becomes_the_resume_cursor(client: LensClient) -> None:
    source = client.connect("nul_in_id")
    collect(source, n=2, timeout=10)
    assert "\x00" not in source.last_event_id


def test_huge_ids_are_a_typed_error_within_bounded_memory(client: LensClient) -> None:
    # An id longer than resume's cap (MAX_ID_LENGTH characters) ends the stream with a typed,
    # non-retryable error: it would otherwise be remembered and sent back as Last-Event-ID.
    with PeakMemory() as memory:
        error = error_of(client, "huge_ids")
    assert isinstance(error, EventIdTooLong) and not error.retryable
    assert "1024" in str(error) and len(str(error)) < 500
    assert memory.peak < MEMORY_BOUND
    carries_on(client)


def test_a_huge_retry_field_keeps_the_stream_and_its_events(client: LensClient) -> None:
    texts = [e.text for e in events_of(client, "huge_retry") if isinstance(e, InferenceResult)]
    assert texts == ["ok 1", "ok 99"]
    carries_on(client)


def test_a_server_echoing_the_key_across_the_cut_leaks_no_piece_of_it(client: LensClient) -> None:
    error = error_of(client, "echo_key_at_the_cut")
    seen: list[str] = []
    chained: BaseException | None = error
    while chained is not None:
        seen.append(repr(chained) + str(chained) + repr(vars(chained)))
        chained = chained.__cause__ or chained.__context__
    assert not any("k-ho" in text for text in seen), seen[0][:300]
    carries_on(client)


def test_huge_integer_is_malformed_fast(client: LensClient) -> None:
    # Python refuses to convert integers of more than 4300 digits (CPU denial of service);
    # the frame becomes a MalformedEvent instead of an exception.
    (event,) = data_events(client, "huge_integer")
    assert isinstance(event, MalformedEvent) and "4300" in str(event.errors)


def test_huge_exponent_becomes_infinity(client: LensClient) -> None:
    # JSON allows the literal; Python's parser turns it into inf. The result is typed, and the
    # non-finite score is visible to whoever aggregates it.
    (event,) = data_events(client, "huge_exponent")
    assert isinstance(event, InferenceResult)
    assert event.scores is not None and math.isinf(event.scores["A"])


@pytest.mark.parametrize("route", ["deep_array", "deep_object"])
def test_deeply_nested_json_is_malformed(client: LensClient, route: str) -> None:
    (event,) = data_events(client, route)
    assert isinstance(event, MalformedEvent)
    assert event.errors == {"_json": ["JSON nested too deeply"]}


def test_malformed_can_raise_a_typed_error(client: LensClient) -> None:
    with pytest.raises(MalformedEventError) as caught:
        events_of(client, "deep_array", on_malformed="raise")
    assert "nested too deeply" in str(caught.value)
    assert len(str(caught.value)) < 1000  # the message quotes 200 characters at most
    carries_on(client)


def test_hostile_frames_through_the_decoder_alone() -> None:
    # The same bytes, through the pure decoder: none of them raises or grows past the cap.
    from rxlens.sse import Decoder

    for name, frame in HOSTILE_DATA.items():
        decoder = Decoder(max_event_bytes=CAP)
        events = decoder.feed(START + frame + result_frame(2))
        assert len(events) == 3, name
        assert json.loads(events[-1].data)["event_data"]["response"] == ["ok 2"], name


def test_a_stream_broken_by_a_hostile_server_is_retryable(client: LensClient) -> None:
    # The end of a short body is a break (StreamClosed or TransportError): resumable.
    with pytest.raises(RxLensError) as caught:
        collect(client.connect("huge_length"), timeout=10)
    assert isinstance(caught.value, (StreamClosed, TransportError))
    assert caught.value.retryable


# --- the REST side -----------------------------------------------------------------------------


@pytest.fixture()
def rest_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import rxlens._rest

    monkeypatch.setattr(rxlens._rest, "MAX_RESPONSE_BYTES", CAP)


@pytest.mark.parametrize("behaviour", [endless_json, json_bomb])
def test_an_endless_rest_answer_is_refused_at_the_cap(
    rest_cap: None, behaviour: Behaviour
) -> None:
    server = HostileServer({"metadata": behaviour, "good": good})
    try:
        with LensClient(api_key="k", base_url=server.base_url) as client:
            with PeakMemory() as memory, pytest.raises(LensAPIError, match="larger than"):
                client.sessions.metadata("lsn-x")
            assert memory.peak < MEMORY_BOUND
            # check_channel reads the same metadata: it warns and lets the stream go ahead.
            with pytest.warns(UserWarning, match="larger than"):
                items = collect(client.events("good", policy=FAST), timeout=20)
            assert isinstance(items[-1], StreamEnd)
    finally:
        server.close()
