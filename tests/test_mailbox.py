"""The ``session.read`` mailbox source, against a scripted WebSocket mailbox on 127.0.0.1."""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reactivex import Observable

from rxlens.errors import AuthenticationError, ConfigurationError, MailboxError, TransportError
from rxlens.events import InferenceResult, LensEvent
from rxlens.mailbox import MailboxSource, PollPolicy, messages_of, parse_cursor, status_of
from rxlens.operators import resume, typed
from rxlens.retry import RetryPolicy
from rxlens.sse import ConnectionState, Event
from tests.mailbox_server import MailboxServer, mailbox_server

FAST = PollPolicy(min_interval=0.01, max_interval=0.05, jitter=0.0, status_every=3)
QUICK_RETRY = RetryPolicy(base=0.01, cap=0.05, jitter=0.0, max_attempts=5)


class Collector:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def subscribe(self, source: Observable[Any]) -> Any:
        return source.subscribe(self.items.append, self.fail, self.done.set)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.items) < count and not self.done.is_set():
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.items)} of {count} items: {self.error!r}")
            time.sleep(0.005)


def source(server: MailboxServer, **options: Any) -> MailboxSource:
    options.setdefault("poll", FAST)
    return MailboxSource(server.url, api_key=server.key, **options)


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, InferenceResult)]


# --- pure parts --------------------------------------------------------------------------------


def test_the_poll_policy_re_polls_at_once_then_backs_off_to_its_cap() -> None:
    policy = PollPolicy(min_interval=0.1, max_interval=1.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay(n) for n in range(7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(10**6) == 1.0  # a long idle stretch neither overflows nor grows


@given(streak=st.integers(0, 10_000), draw=st.floats(0, 1, exclude_max=True))
def test_jitter_stays_within_its_share_and_the_cap(streak: int, draw: float) -> None:
    policy = PollPolicy(min_interval=0.1, max_interval=1.0, jitter=0.2)
    plain = PollPolicy(min_interval=0.1, max_interval=1.0, jitter=0.0).delay(streak)
    delay = policy.delay(streak, draw)
    assert 0.0 <= delay <= 1.0
    assert plain * 0.8 - 1e-9 <= delay <= min(1.0, plain * 1.2) + 1e-9


def test_status_is_asked_every_n_reads_and_after_idle_stretches() -> None:
    policy = PollPolicy(status_every=4)
    asked = [r for r in range(1, 13) if policy.wants_status(r, 0)]
    assert asked == [4, 8, 12]
    assert policy.wants_status(1, 5) and not policy.wants_status(1, 4)


@pytest.mark.parametrize(
    "options",
    [
        {"min_interval": 0},
        {"min_interval": 2, "max_interval": 1},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"status_every": 0},
        {"reply_timeout": 0},
    ],
)
def test_a_nonsense_poll_policy_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PollPolicy(**options)


def test_every_reply_shape_gives_envelopes() -> None:
    env = {"type": "inference.result", "event_data": {"response": ["a"]}}
    assert messages_of(None) == []
    assert messages_of({"messages": None}) == []
    assert messages_of({"messages": [env, env]}) == [env, env]
    assert messages_of([env]) == [env]
    assert messages_of(env) == [env]
    assert messages_of({"type": "log.info", "timestamp": 2, "data": {"message": "m"}}) == [
        {"type": "log.info", "timestamp": 2, "event_data": {"message": "m"}}
    ]
    assert messages_of([7]) == [{"type": "mailbox.message", "event_data": 7}]


def test_cursors_and_status_replies_are_read_as_documented() -> None:
    assert parse_cursor("abc:0") == ("abc", 0)
    assert parse_cursor("a:b:12") == ("a:b", 12)
    for bad in ("", "abc", ":3", "abc:x", "abc:-1"):
        with pytest.raises(ConfigurationError):
            parse_cursor(bad)
    assert status_of({"session_status": "SESSION_STATUS_DESTROYED"}) == "SESSION_STATUS_DESTROYED"
    assert status_of({"type": "session.status.response", "event_data": {"status": "4"}}) == "4"
    assert status_of({"type": "x"}) is None


def test_the_source_refuses_what_is_not_a_websocket_url() -> None:
    with pytest.raises(ConfigurationError):
        MailboxSource("https://api.example/v0.5/lens/sessions/lsn-1")
    with pytest.raises(ConfigurationError):
        MailboxSource("ws://x/y", on_lost="ignore")  # type: ignore[arg-type]


# --- against a mailbox ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["messages", "list", "single", "timestamp"])
def test_every_message_arrives_in_order_as_typed_events(shape: str) -> None:
    with mailbox_server(shape=shape) as server:
        server.add(7)
        got = Collector()
        subscription = got.subscribe(source(server).pipe(typed()))
        got.wait_for(7)
        subscription.dispose()
    assert texts(got.items) == [f"result {n}" for n in range(1, 8)]
    ids = [e.id for e in got.items]
    client_id = ids[0].rpartition(":")[0]
    assert ids == [f"{client_id}:{n}" for n in range(1, 8)]
    assert got.error is None


def test_messages_added_later_are_polled_for() -> None:
    with mailbox_server() as server:
        got = Collector()
        subscription = got.subscribe(source(server).pipe(typed()))
        server.add(2)
        got.wait_for(2)
        server.add(2)
        got.wait_for(4)
        subscription.dispose()
    assert texts(got.items) == ["result 1", "result 2", "result 3", "result 4"]


def test_a_stray_reply_never_shifts_the_answers() -> None:
    with mailbox_server(stray_replies=True) as server:
        server.add(5)
        got = Collector()
        subscription = got.subscribe(source(server).pipe(typed()))
        got.wait_for(5)
        time.sleep(0.1)  # a few more polls, each preceded by a stray reply
        subscription.dispose()
    assert texts(got.items) == [f"result {n}" for n in range(1, 6)]
    assert got.error is None


def test_the_session_end_drains_the_mailbox_and_completes() -> None:
    with mailbox_server(status="SESSION_STATUS_DESTROYED", batch=2) as server:
        server.add(5)
        got = Collector()
        got.subscribe(source(server).pipe(typed()))
        assert got.done.wait(10)
    assert got.error is None
    assert texts(got.items) == [f"result {n}" for n in range(1, 6)]


def test_a_wrong_key_is_an_authentication_error_without_the_key() -> None:
    with mailbox_server() as server:
        got = Collector()
        got.subscribe(MailboxSource(server.url, api_key="wrong-secret-key", poll=FAST))
        assert got.done.wait(10)
    assert isinstance(got.error, AuthenticationError)
    assert "wrong-secret-key" not in repr(got.error) and got.error.__context__ is None


def test_the_browser_subprotocol_form_authenticates_too() -> None:
    with mailbox_server() as server:
        server.add(1)
        got = Collector()
        subscription = got.subscribe(source(server, auth="subprotocol"))
        got.wait_for(1)
        subscription.dispose()
    assert len(got.items) == 1 and isinstance(got.items[0], Event)


def test_an_error_reply_ends_the_stream_with_a_mailbox_error() -> None:
    with mailbox_server(error_reply="Unknown session id: lsn-mailbox") as server:
        got = Collector()
        got.subscribe(source(server).pipe(resume(QUICK_RETRY)))
        assert got.done.wait(10)
    assert isinstance(got.error, MailboxError)
    assert "Unknown session id" in str(got.error)
    assert server.connections == 1  # not retried


def test_a_cursor_resumes_the_same_client_id() -> None:
    with mailbox_server() as server:
        server.add(6)
        server.positions["reader-1"] = 4  # the server's read position for that client id
        got = Collector()
        subscription = got.subscribe(source(server, last_event_id="reader-1:4").pipe(typed()))
        got.wait_for(2)
        subscription.dispose()
    assert [e.id for e in got.items] == ["reader-1:5", "reader-1:6"]
    assert texts(got.items) == ["result 5", "result 6"]
    assert server.requests[0]["event_data"] == {"client_id": "reader-1"}


def test_a_lost_batch_is_counted_and_warned_by_default() -> None:
    states: list[ConnectionState] = []
    with mailbox_server(batch=3, drop_in_flight=1) as server:
        server.add(9)
        mailbox = source(server, on_state=states.append)
        got = Collector()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            subscription = got.subscribe(mailbox.pipe(resume(QUICK_RETRY), typed()))
            got.wait_for(6)
            time.sleep(0.1)
            subscription.dispose()
    # The first batch (results 1-3) was taken off the mailbox and never answered.
    assert texts(got.items) == [f"result {n}" for n in range(4, 10)]
    assert mailbox.maybe_lost == 1
    assert any("may be lost" in str(w.message) for w in caught)
    assert any("may be lost" in s.note for s in states)


def test_replay_recovers_a_lost_batch_exactly_once() -> None:
    with mailbox_server(batch=3, drop_in_flight=2) as server:
        server.add(4)
        mailbox = source(server, on_lost="replay")
        got = Collector()
        subscription = got.subscribe(mailbox.pipe(resume(QUICK_RETRY), typed()))
        got.wait_for(4)
        server.add(5)
        got.wait_for(9)
        time.sleep(0.1)
        subscription.dispose()
    assert texts(got.items) == [f"result {n}" for n in range(1, 10)]
    assert mailbox.maybe_lost == 2


def test_dispose_during_a_blocked_read_ends_the_thread_at_once() -> None:
    with mailbox_server(silent=True) as server:
        got = Collector()
        subscription = got.subscribe(source(server))
        deadline = time.monotonic() + 10
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.requests, "the reader never asked"
        started = time.monotonic()
        subscription.dispose()
        readers = [t for t in threading.enumerate() if t.name == "rxlens-mailbox-reader"]
        for thread in readers:
            thread.join(2)
        took = time.monotonic() - started
    assert not any(t.is_alive() for t in readers)
    assert took < 0.5, f"the reader thread took {took:.3f} s to end"
    assert got.error is None and not got.done.is_set()


def test_a_subscriber_error_is_passed_on_and_never_retried() -> None:
    class Mine(Exception):
        pass

    def explode(_event: LensEvent) -> None:
        raise Mine("from the subscriber")

    with mailbox_server() as server:
        server.add(3)
        got = Collector()
        pipeline = source(server).pipe(resume(QUICK_RETRY), typed())
        pipeline.subscribe(explode, got.fail)
        assert got.done.wait(10)
    assert isinstance(got.error, Mine)
    assert server.connections == 1


def test_a_refused_connection_is_a_retryable_transport_error() -> None:
    got = Collector()
    got.subscribe(MailboxSource("ws://127.0.0.1:9/lens/sessions/lsn-x", api_key="k", poll=FAST))
    assert got.done.wait(10)
    assert isinstance(got.error, TransportError) and got.error.retryable
    assert "refused" in str(got.error)


def test_the_key_is_not_in_the_repr() -> None:
    mailbox = MailboxSource("ws://127.0.0.1:1/x", api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(mailbox)
