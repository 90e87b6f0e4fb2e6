"""``rxlens.sse.connect`` and ``stream`` end to end, against a real server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sinks import subscribe
from sse_server import Handler, ScriptedServer, frames, sse, status

from rxlens import LensClient
from rxlens.errors import (
    AuthenticationError,
    ContentTypeError,
    EventTooLarge,
    HTTPStatusError,
    LocalError,
    NotFound,
    RetriesExhausted,
    StreamClosed,
    TransportError,
    UnsendableEventId,
)
from rxlens.retry import RetryPolicy, is_retryable
from rxlens.sse import ConnectionState, Decoder, Event, connect, stream
from rxlens.sse._decoder import RETRY_MAX_MS

KEY = "sk-test-SECRET-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
FAST = RetryPolicy.immediate(max_attempts=50)


def datas(items: list[Event]) -> list[str]:
    return [e.data for e in items]


def reader_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("rxlens-")}


#: How long a test waits for something that happens at once when the code is right. Generous
#: (a loaded machine is slow), and always well below the time the broken behaviour would take.
PATIENCE = 5.0


@pytest.fixture()
def server() -> Any:
    with ScriptedServer() as srv:
        yield srv


def test_events_arrive_in_order_and_end_is_stream_closed(server: ScriptedServer) -> None:
    server.add(sse(frames(range(3))))
    sink, _ = subscribe(connect(server.url, headers=AUTH))
    sink.wait()
    assert datas(sink.items) == ["x 0", "x 1", "x 2"]
    assert [e.id for e in sink.items] == ["0", "1", "2"]
    assert isinstance(sink.error, StreamClosed) and sink.error.retryable


def test_request_headers(server: ScriptedServer) -> None:
    server.add(sse(frames(range(1))))
    subscribe(connect(server.url, headers=AUTH, last_event_id="41"))[0].wait()
    sent = server.requests[0]
    assert sent["accept"] == "text/event-stream"
    assert sent["cache-control"] == "no-cache"
    assert sent["authorization"] == f"Bearer {KEY}"
    assert sent["last-event-id"] == "41"


def test_no_last_event_id_header_without_a_cursor(server: ScriptedServer) -> None:
    server.add(sse(frames(range(1))))
    subscribe(connect(server.url))[0].wait()
    assert "last-event-id" not in server.requests[0]


def test_resubscribing_sends_the_cursor(server: ScriptedServer) -> None:
    server.add(sse(frames(range(0, 5))), sse(frames(range(5, 6))))
    source = connect(server.url)
    subscribe(source)[0].wait()
    assert source.last_event_id == "4"
    subscribe(source)[0].wait()
    assert server.requests[1]["last-event-id"] == "4"


def test_subscribe_does_not_block(server: ScriptedServer) -> None:
    # The server answers only once the subscriber's thread goes on: a subscribe that waited
    # for the response would return only after the server gave up waiting (10 s).
    release = threading.Event()
    answered = threading.Event()

    def script(h: Handler) -> None:
        release.wait(10)
        answered.set()
        sse(b"data: a\n\n", then="hold")(h)

    server.add(script)
    sink, disposable = subscribe(connect(server.url))
    returned_first = not answered.is_set()
    release.set()
    assert returned_first, "subscribe() waited for the server"
    sink.wait_items(1)
    disposable.dispose()


def test_first_event_of_close_delimited_response_arrives_before_more_bytes(
    server: ScriptedServer,
) -> None:
    release = threading.Event()

    def script(h: Handler) -> None:
        h.start_sse(chunked=False)
        h.write(b"data: first\n\n")
        release.wait(10)
        h.write(b"data: second\n\n")

    server.add(script)
    sink, disposable = subscribe(connect(server.url))
    try:
        first = sink.arrived.get(timeout=5)  # arrives while the server still holds back
        assert first.data == "first"
        assert not release.is_set()
    finally:
        release.set()
    sink.wait()
    assert datas(sink.items) == ["first", "second"]
    disposable.dispose()


def test_dispose_while_server_silent_closes_socket_and_thread(server: ScriptedServer) -> None:
    # The server stays silent for 30 s and the read timeout is 60 s: only a dispose that
    # wakes the blocked read ends the thread within PATIENCE.
    server.add(sse(b"data: a\n\n", then="hold"))
    before = reader_threads()
    sink, disposable = subscribe(connect(server.url, timeout=(5, 60)))
    sink.wait_items(1)
    (reader,) = reader_threads() - before
    disposable.dispose()
    reader.join(PATIENCE)
    assert not reader.is_alive(), "the reader thread outlived dispose"
    assert sink.error is None and not sink.completed  # disposal is silent


def test_dispose_before_headers_arrive(server: ScriptedServer) -> None:
    def slow(h: Handler) -> None:
        h.hold(10)

    requested = threading.Event()

    def noting(h: Handler) -> None:
        requested.set()
        slow(h)

    server.add(noting)
    before = reader_threads()
    sink, disposable = subscribe(connect(server.url, timeout=(5, 60)))
    (reader,) = reader_threads() - before
    # The request has been sent: the client is about to read, or reading, the status line
    # (the socket's shutdown wakes the read either way). The server holds for 10 s.
    assert requested.wait(PATIENCE)
    disposable.dispose()
    reader.join(PATIENCE)
    assert not reader.is_alive(), "the reader thread outlived dispose"
    assert sink.error is None


def test_raising_on_next_reaches_subscriber_unchanged_and_never_reconnects(
    server: ScriptedServer,
) -> None:
    server.add(sse(frames(range(5))))
    boom = RuntimeError("my own bug")
    errors: list[Exception] = []
    done = threading.Event()
    states: list[ConnectionState] = []

    def on_next(event: Event) -> None:
        if event.data == "x 2":
            raise boom

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    stream(server.url, FAST, on_state=states.append).subscribe(on_next, on_error)
    assert done.wait(PATIENCE)
    assert errors == [boom]
    # A reconnect is always announced (backing_off) before it is scheduled, and the
    # subscriber's on_error ends resume for good: no reconnect can follow.
    assert "backing_off" not in [s.kind for s in states]
    assert server.connections == 1


def test_204_completes(server: ScriptedServer) -> None:
    server.add(status(204))
    sink, _ = subscribe(stream(server.url, FAST))
    sink.wait()
    assert sink.completed and sink.error is None
    assert server.connections == 1


@pytest.mark.parametrize(
    ("code", "error_type"),
    [(401, AuthenticationError), (403, AuthenticationError), (404, NotFound)],
)
def test_client_errors_are_typed_and_never_retried(
    server: ScriptedServer, code: int, error_type: type[Exception]
) -> None:
    server.add(status(code, b'{"detail": "Invalid API key"}', {"Content-Type": "application/json"}))
    sink, _ = subscribe(stream(server.url, FAST, headers=AUTH))
    sink.wait()
    assert isinstance(sink.error, error_type)
    assert sink.error.status == code  # type: ignore[attr-defined]
    assert "Invalid API key" in str(sink.error)
    assert KEY not in str(sink.error) and KEY not in repr(sink.error)
    assert server.connections == 1


def test_other_4xx_is_not_retried(server: ScriptedServer) -> None:
    server.add(status(422, b"bad"))
    sink, _ = subscribe(stream(server.url, FAST))
    sink.wait()
    assert type(sink.error) is HTTPStatusError and not sink.error.retryable
    assert server.connections == 1


def test_429_with_retry_after_is_honoured(server: ScriptedServer) -> None:
    server.add(status(429, b"slow down", {"Retry-After": "1"}), sse(frames(range(2))))
    states: list[ConnectionState] = []
    policy = RetryPolicy(base=0.0, jitter=0.0, max_attempts=3)
    started = time.monotonic()
    sink, disposable = subscribe(stream(server.url, policy, on_state=states.append))
    sink.wait_items(2)
    disposable.dispose()
    assert time.monotonic() - started >= 0.95
    backoff = [s for s in states if s.kind == "backing_off"]
    assert backoff[0].delay == pytest.approx(1.0)
    assert isinstance(backoff[0].error, HTTPStatusError) and backoff[0].error.status == 429


def test_503_is_retried(server: ScriptedServer) -> None:
    server.add(status(503), status(503), sse(frames(range(2))))
    sink, disposable = subscribe(stream(server.url, FAST))
    sink.wait_items(2)
    disposable.dispose()
    assert datas(sink.items) == ["x 0", "x 1"]
    assert server.connections >= 3


def test_gives_up_with_the_last_cause(server: ScriptedServer) -> None:
    server.add(status(503, b"down"))
    sink, _ = subscribe(stream(server.url, RetryPolicy.immediate(max_attempts=2)))
    sink.wait()
    assert isinstance(sink.error, RetriesExhausted)
    assert isinstance(sink.error.last_error, HTTPStatusError)
    assert sink.error.__cause__ is sink.error.last_error
    assert server.connections == 3


def test_wrong_content_type(server: ScriptedServer) -> None:
    server.add(sse(b"<html>", content_type="text/html"))
    sink, _ = subscribe(stream(server.url, FAST))
    sink.wait()
    assert isinstance(sink.error, ContentTypeError)
    assert server.connections == 1


def test_content_type_with_parameters_and_case(server: ScriptedServer) -> None:
    server.add(sse(frames(range(1)), content_type="Text/Event-Stream; charset=utf-8"))
    sink, _ = subscribe(connect(server.url))
    sink.wait()
    assert datas(sink.items) == ["x 0"]


def test_unreachable_server_is_a_transport_error() -> None:
    with ScriptedServer() as srv:
        url = srv.url
    sink, _ = subscribe(connect(url, timeout=(2, 2)))
    sink.wait()
    assert isinstance(sink.error, TransportError) and sink.error.retryable


def test_event_too_large_is_not_retried_and_keeps_earlier_events(server: ScriptedServer) -> None:
    server.add(sse(b"data: ok\n\n" + b"data: " + b"z" * 5000 + b"\n\n"))
    sink, _ = subscribe(stream(server.url, FAST, max_event_bytes=1000))
    sink.wait()
    assert datas(sink.items) == ["ok"]
    assert isinstance(sink.error, EventTooLarge)
    assert server.connections == 1


def test_retry_field_is_carried_on_the_error(server: ScriptedServer) -> None:
    server.add(sse(b"retry: 2500\ndata: a\n\n"))
    source = connect(server.url)
    sink, _ = subscribe(source)
    sink.wait()
    assert source.retry_ms == 2500
    assert sink.error is not None and sink.error.retry_ms == 2500  # type: ignore[attr-defined]


def test_retry_field_sets_the_backoff_base(server: ScriptedServer) -> None:
    server.add(sse(b"retry: 50\ndata: a\n\n"), sse(b"data: b\n\n", then="hold"))
    states: list[ConnectionState] = []
    sink, disposable = subscribe(
        stream(server.url, RetryPolicy(jitter=0.0), on_state=states.append)
    )
    sink.wait_items(2)
    disposable.dispose()
    assert [s.delay for s in states if s.kind == "backing_off"] == [pytest.approx(0.05)]


def test_state_callback_sequence(server: ScriptedServer) -> None:
    server.add(sse(frames(range(2)), then="drop"), sse(frames(range(2, 3)), then="hold"))
    states: list[ConnectionState] = []
    sink, disposable = subscribe(stream(server.url, FAST, on_state=states.append))
    sink.wait_items(3)
    disposable.dispose()
    kinds = [s.kind for s in states]
    assert kinds[:5] == ["connecting", "open", "backing_off", "connecting", "open"]
    assert states[1].headers["Content-Type"] == "text/event-stream"
    assert states[3].last_event_id == "1"
    assert all(KEY not in repr(s) for s in states)


def test_replayed_events_are_not_delivered_twice(server: ScriptedServer) -> None:
    # The server ignores Last-Event-ID and replays from the start each time; a last frame
    # marks the end, so everything the replay could have duplicated has arrived before it.
    last = b"id: end\ndata: end\n\n"
    server.add(
        sse(frames(range(0, 3)), then="drop"), sse(frames(range(0, 6)) + last, then="hold")
    )
    sink, disposable = subscribe(stream(server.url, FAST))
    sink.wait_for(lambda items: bool(items) and items[-1].data == "end")
    disposable.dispose()
    assert datas(sink.items) == [f"x {i}" for i in range(6)] + ["end"]
    assert server.requests[1]["last-event-id"] == "2"


def test_repr_hides_headers() -> None:
    source = connect("http://127.0.0.1:1/x", headers=AUTH)
    assert KEY not in repr(source)


# --- resume after any drop point --------------------------------------------------------------

TOTAL = 30
ALL_FRAMES = [b"id: %d\ndata: event %d\n\n" % (i, i) for i in range(TOTAL)]


def resuming_script(cuts: list[int]) -> Any:
    """Serve from Last-Event-ID; connection k drops after ``cuts[k]`` more bytes."""
    counter = iter(range(10**6))

    def script(h: Handler) -> None:
        k = next(counter)
        after = h.headers.get("Last-Event-ID")
        start = int(after) + 1 if after else 0
        body = b"".join(ALL_FRAMES[start:])
        h.start_sse(chunked=k % 2 == 0)
        if k < len(cuts):
            h.write(body[: cuts[k] % (len(body) + 1)])
            h.drop()
        else:
            h.write(body)
            h.hold(5)

    return script


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.integers(0, 2000), min_size=1, max_size=5))
def test_resume_after_any_drop_point_gives_each_event_exactly_once(cuts: list[int]) -> None:
    with ScriptedServer() as server:
        server.add(resuming_script(cuts))
        sink, disposable = subscribe(stream(server.url, FAST))
        sink.wait_items(TOTAL)
        disposable.dispose()
        assert datas(sink.items) == [f"event {i}" for i in range(TOTAL)]
        assert sink.error is None


# --- Last-Event-ID: UTF-8 on the wire, or a typed error ----------------------------------------


def sent_id(server: ScriptedServer, index: int) -> bytes:
    # http.server decodes header bytes as latin-1: encoding back gives the bytes on the wire.
    return server.requests[index]["last-event-id"].encode("latin-1")


@pytest.mark.parametrize("event_id", ["é", "…", "数据", "🙂", "a b\tc"])
def test_a_non_ascii_id_goes_back_as_utf8(server: ScriptedServer, event_id: str) -> None:
    server.add(sse(b"id: " + event_id.encode() + b"\ndata: a\n\n", then="drop"), status(204))
    sink, _ = subscribe(stream(server.url, FAST))
    sink.wait()
    assert sink.completed, sink.error
    assert server.connections == 2
    assert sent_id(server, 1) == event_id.encode()


def test_connect_with_a_non_ascii_cursor_sends_it_as_utf8(server: ScriptedServer) -> None:
    server.add(sse(frames(range(1))))
    sink, _ = subscribe(connect(server.url, last_event_id="🙂-1"))
    sink.wait()
    assert datas(sink.items) == ["x 0"]
    assert sent_id(server, 0) == "🙂-1".encode()


@pytest.mark.parametrize("event_id", [" x", "\tx", "\x0bx"])
def test_an_id_that_cannot_be_sent_is_a_typed_error_at_once(
    server: ScriptedServer, event_id: str
) -> None:
    # Legal SSE ids that no HTTP header can carry unchanged (leading white space).
    server.add(sse(b"id:" + b" " + event_id.encode() + b"\ndata: a\n\n", then="drop"))
    sink, _ = subscribe(stream(server.url, FAST))
    sink.wait()
    assert datas(sink.items) == ["a"]
    assert isinstance(sink.error, UnsendableEventId), repr(sink.error)
    assert not sink.error.retryable and not is_retryable(sink.error)
    assert sink.error.event_id == event_id
    assert server.connections == 1


@pytest.mark.parametrize("event_id", ["a\nb", "a\rb", "a\x00b", " a", "\ud800"])
def test_connect_refuses_a_cursor_it_cannot_send(event_id: str) -> None:
    with pytest.raises(UnsendableEventId):
        connect("http://127.0.0.1:1/x", last_event_id=event_id)


# --- local failures are never retried --------------------------------------------------------


def test_a_header_requests_refuses_is_a_local_error_not_retried(server: ScriptedServer) -> None:
    server.add(sse(frames(range(1))))
    headers = {"X-Count": 1}
    sink, _ = subscribe(stream(server.url, FAST, headers=headers))  # type: ignore[arg-type]
    sink.wait()
    assert isinstance(sink.error, LocalError) and not sink.error.retryable, repr(sink.error)
    assert server.connections == 0


def test_a_url_without_an_adapter_is_a_local_error_not_retried() -> None:
    sink, _ = subscribe(stream("htp://127.0.0.1:1/x", FAST))
    sink.wait()
    assert isinstance(sink.error, LocalError) and not sink.error.retryable, repr(sink.error)


def test_a_bug_on_the_reader_thread_ends_the_subscription_typed_and_unretried(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bug = TypeError("a bug in the decoder")

    class Broken(Decoder):
        def feed(self, chunk: bytes) -> list[Event]:
            raise bug

    monkeypatch.setattr("rxlens.sse._connect.Decoder", Broken)
    server.add(sse(frames(range(2))))
    sink, _ = subscribe(stream(server.url, FAST))
    sink.wait()
    assert isinstance(sink.error, LocalError) and not sink.error.retryable, repr(sink.error)
    assert sink.error.__cause__ is bug
    assert server.connections == 1


# --- how the stream ended ----------------------------------------------------------------------


def test_a_cut_inside_an_event_is_reported_mid_event(server: ScriptedServer) -> None:
    server.add(sse(b"data: a\n\ndata: b\n"))
    sink, _ = subscribe(connect(server.url))
    sink.wait()
    assert datas(sink.items) == ["a"]
    assert isinstance(sink.error, StreamClosed)
    assert "mid-event" in str(sink.error) and not sink.error.clean


def test_an_end_at_an_event_boundary_is_clean(server: ScriptedServer) -> None:
    server.add(sse(b"data: a\n\n: bye\n"))
    sink, _ = subscribe(connect(server.url))
    sink.wait()
    assert isinstance(sink.error, StreamClosed)
    assert "at an event boundary" in str(sink.error) and sink.error.clean


# --- retry: fields of any length (a hostile or broken server) -----------------------------------


@pytest.mark.parametrize("digits", [400, 5000])
def test_a_huge_retry_backs_off_at_the_cap_and_the_stream_goes_on(
    server: ScriptedServer, digits: int
) -> None:
    server.add(sse(b"retry: " + b"7" * digits + b"\ndata: a\n\n"), status(204))
    states: list[ConnectionState] = []
    policy = RetryPolicy(cap=0.05, jitter=0.0, max_attempts=3)
    sink, _ = subscribe(stream(server.url, policy, on_state=states.append))
    sink.wait()
    assert datas(sink.items) == ["a"]
    assert sink.completed, repr(sink.error)
    assert [s.delay for s in states if s.kind == "backing_off"] == [pytest.approx(0.05)]


def test_a_huge_retry_keeps_the_events_of_its_chunk(server: ScriptedServer) -> None:
    server.add(sse(b"data: a\n\nretry: " + b"1" * 5000 + b"\ndata: b\n\n"))
    source = connect(server.url)
    sink, _ = subscribe(source)
    sink.wait()
    assert datas(sink.items) == ["a", "b"]
    assert isinstance(sink.error, StreamClosed)
    assert source.retry_ms == RETRY_MAX_MS


LENS_END = b'data: {"type": "sse.stream.end", "event_data": {}}\n\n'
LENS_START = b'data: {"type": "sse.stream.start", "event_data": {"session_id": "lsn-1"}}\n\n'


@pytest.mark.parametrize("digits", [400, 5000])
def test_a_huge_retry_through_lens_client_events_with_its_heartbeat_timeout(digits: int) -> None:
    with ScriptedServer(path="/api/lens/sessions/consumer/lsn-1") as server:
        server.add(
            sse(LENS_START + b"retry: " + b"9" * digits + b"\n\n"),
            sse(LENS_START + LENS_END, then="hold"),
        )
        base = server.url.rsplit("/lens/", 1)[0]
        policy = RetryPolicy(cap=0.05, jitter=0.0, max_attempts=3)
        with LensClient(api_key=KEY, base_url=base) as client:
            events = client.events(
                "lsn-1", check_channel=False, heartbeat_timeout=2.0, policy=policy
            )
            sink, disposable = subscribe(events)
            sink.wait()
            disposable.dispose()
        assert sink.completed, repr(sink.error)
        assert [e.type for e in sink.items][-1] == "sse.stream.end"
        assert server.connections == 2


# --- the reconnection rule after a clean end (README, "RetryPolicy") ----------------------------


def test_clean_ends_reconnect_after_the_servers_retry_every_time(server: ScriptedServer) -> None:
    clean = sse(b"retry: 100\ndata: a\n\n")
    server.add(clean, clean, clean, status(204))
    states: list[ConnectionState] = []
    sink, _ = subscribe(stream(server.url, RetryPolicy(jitter=0.0), on_state=states.append))
    sink.wait()
    assert sink.completed and datas(sink.items) == ["a", "a", "a"]
    assert [s.delay for s in states if s.kind == "backing_off"] == [pytest.approx(0.1)] * 3


def test_cuts_mid_event_still_back_off(server: ScriptedServer) -> None:
    cut = sse(b"retry: 100\ndata: a\n\ndata: b\n")
    server.add(cut, cut, status(204))
    states: list[ConnectionState] = []
    sink, _ = subscribe(stream(server.url, RetryPolicy(jitter=0.0), on_state=states.append))
    sink.wait()
    assert sink.completed
    assert [s.delay for s in states if s.kind == "backing_off"] == [
        pytest.approx(0.1),
        pytest.approx(0.2),
    ]
