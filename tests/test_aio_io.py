"""``LensClient(io="asyncio")``: every connection of a client on one shared asyncio I/O thread.

The same behaviour as the threaded default, end to end against the emulator: typed events,
resume after a drop, typed errors, prompt dispose with no thread or socket left, no retry of a
subscriber's own exception, the key never shown; and ``hand_off``, which keeps a blocked
subscriber from stalling the other sessions of the I/O thread.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler
from sinks import Sink, subscribe

from rxlens import LensClient, RetryPolicy
from rxlens.emulator import Faults, LensEmulator
from rxlens.errors import (
    AuthenticationError,
    ConfigurationError,
    HandOffOverflow,
    NotFound,
    StreamClosed,
    UnsendableEventId,
)
from rxlens.events import InferenceResult, LensEvent, StreamEnd, StreamStart
from rxlens.operators import hand_off, only_results
from rxlens.sse import AsyncSSESource, Event, IOLoop

pytest.importorskip("aiohttp")

FAST = RetryPolicy.immediate(max_attempts=20)
KEY = "aio-secret-key-0123456789"


def payload(n: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"r{n}"], "query_id": f"q{n}"}}


def results(items: list[LensEvent]) -> list[InferenceResult]:
    return [e for e in items if isinstance(e, InferenceResult)]


def io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rxlens-aio")]


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass  # closed while listing
    return count


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached; {threading.enumerate()}"
        time.sleep(0.01)


@pytest.fixture()
def emu() -> Iterator[LensEmulator]:
    with LensEmulator(api_key=KEY, heartbeat_interval=0.2, idle_timeout=30) as emulator:
        yield emulator


@pytest.fixture()
def client(emu: LensEmulator) -> Iterator[LensClient]:
    with LensClient(api_key=KEY, base_url=emu.base_url, io="asyncio") as c:
        yield c


# --- end to end -------------------------------------------------------------------------------


def test_typed_results_end_to_end(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session()
    sink, _ = subscribe(client.events(sid, policy=FAST))
    emu.wait_readers(sid, 1)
    emu.push_many(sid, [payload(i) for i in range(3)])
    sink.wait_for(lambda items: len(results(items)) == 3)
    emu.destroy(sid)
    sink.wait()
    assert sink.completed and sink.error is None
    assert isinstance(sink.items[0], StreamStart) and isinstance(sink.items[-1], StreamEnd)
    assert [(r.text, r.query_id) for r in results(sink.items)] == [
        ("r0", "q0"),
        ("r1", "q1"),
        ("r2", "q2"),
    ]
    assert all(r.id is not None and '"r' in r.raw for r in results(sink.items))


def test_resume_after_a_drop_delivers_each_event_exactly_once(
    emu: LensEmulator, client: LensClient
) -> None:
    sid = emu.create_session(faults=Faults(drop_after=4, drops=3))
    sink, disposable = subscribe(client.events(sid, policy=FAST).pipe(only_results()))
    emu.wait_readers(sid, 1)
    emu.push_many(sid, [payload(i) for i in range(20)])
    sink.wait_for(lambda items: len(items) >= 20)
    emu.wait_until(sid, lambda s: s.connections >= 4)
    disposable.dispose()
    assert [r.text for r in sink.items] == [f"r{i}" for i in range(20)]
    # The reconnects resumed from the last delivered id, sent as Last-Event-ID.
    assert emu.session_stats(sid).last_event_id not in (None, "")


def test_states_are_reported_as_by_the_threaded_source(emu: LensEmulator) -> None:
    sid = emu.create_session()
    states: list[Any] = []
    source = AsyncSSESource(emu.consumer_url(sid), headers=emu.headers, on_state=states.append)
    sink, disposable = subscribe(source)
    sink.wait_items(1)
    disposable.dispose()
    eventually(lambda: [s.kind for s in states] == ["connecting", "open", "closed"])
    assert states[1].headers["Content-Type"].startswith("text/event-stream")
    assert isinstance(sink.items[0], Event) and "sse.stream.start" in sink.items[0].data


def test_wrong_key_is_authentication_error_without_the_key(emu: LensEmulator) -> None:
    client = LensClient(api_key="wrong-key-abcdef", base_url=emu.base_url, io="asyncio")
    sid = emu.create_session()
    sink, _ = subscribe(client.events(sid, policy=FAST, check_channel=False))
    sink.wait()
    assert isinstance(sink.error, AuthenticationError) and not sink.error.retryable
    chain: BaseException | None = sink.error
    while chain is not None:
        assert "wrong-key-abcdef" not in f"{chain} {chain!r}"
        chain = chain.__cause__ or chain.__context__
    assert emu.stats.unauthorized == 1  # not retried
    client.close()


def test_unknown_session_is_not_found(client: LensClient) -> None:
    sink, _ = subscribe(client.events("lsn-nope", policy=FAST, check_channel=False))
    sink.wait()
    assert isinstance(sink.error, NotFound)


def test_key_never_in_reprs(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session()
    source = client.connect(sid)
    for text in (repr(client), repr(source), repr(source.sse), repr(client._io_loop)):
        assert KEY not in text
    assert isinstance(source.sse, AsyncSSESource)


# --- the subscriber's own failure -------------------------------------------------------------


def test_a_subscriber_exception_is_passed_on_and_not_retried(
    emu: LensEmulator, client: LensClient
) -> None:
    sid = emu.create_session()
    boom = RuntimeError("the subscriber's own bug")
    errors: list[Exception] = []
    done = threading.Event()

    def on_next(event: LensEvent) -> None:
        if isinstance(event, InferenceResult):
            raise boom

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    subscription = client.events(sid, policy=FAST).subscribe(on_next, on_error)
    emu.wait_readers(sid, 1)
    emu.push(sid, payload(1))
    assert done.wait(10)
    assert errors == [boom]
    assert emu.session_stats(sid).connections == 1
    subscription.dispose()


def test_an_id_that_cannot_be_sent_is_a_typed_error_at_once(emu: LensEmulator) -> None:
    with pytest.raises(UnsendableEventId, match="Last-Event-ID"):
        AsyncSSESource(emu.consumer_url("lsn-1"), last_event_id="a\nb")


def test_an_unknown_io_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="io must be"):
        LensClient(api_key="k", base_url="http://127.0.0.1:1/api", io="fibers")  # type: ignore[arg-type]


# --- resources --------------------------------------------------------------------------------


def test_dispose_ends_promptly_leaving_no_thread_and_no_socket(
    emu: LensEmulator, client: LensClient
) -> None:
    sid = emu.create_session()
    threads_before, sockets_before = set(threading.enumerate()), open_sockets()
    # No channel check: its REST request keeps a pooled keep-alive connection, by design.
    sink, disposable = subscribe(client.events(sid, policy=FAST, check_channel=False))
    emu.wait_readers(sid, 1)
    assert len(io_threads()) == 1
    disposable.dispose()
    emu.wait_until(sid, lambda s: s.readers_open == 0)
    eventually(lambda: not io_threads())
    eventually(lambda: set(threading.enumerate()) <= threads_before)
    eventually(lambda: open_sockets() <= sockets_before)
    count = len(sink.items)
    emu.push(sid, payload(1))
    assert len(sink.items) == count and sink.error is None and not sink.completed


def test_client_close_stops_the_io_thread(emu: LensEmulator) -> None:
    client = LensClient(api_key=KEY, base_url=emu.base_url, io="asyncio")
    sid = emu.create_session()
    subscribe(client.events(sid, policy=FAST))
    emu.wait_readers(sid, 1)
    client.close()
    assert not io_threads()
    emu.wait_until(sid, lambda s: s.readers_open == 0)


def test_two_hundred_sessions_share_one_io_thread(emu: LensEmulator, client: LensClient) -> None:
    sids = [emu.create_session() for _ in range(200)]
    sinks: list[Sink] = []
    subscriptions = []
    for sid in sids:
        sink, disposable = subscribe(client.events(sid, policy=FAST, check_channel=False))
        sinks.append(sink)
        subscriptions.append(disposable)
    for sid in sids:
        emu.wait_readers(sid, 1, timeout=30)
    assert len(io_threads()) == 1
    for n, sid in enumerate(sids):
        emu.push(sid, payload(n))
    for n, sink in enumerate(sinks):
        sink.wait_for(lambda items: len(results(items)) == 1, timeout=30)
        assert results(sink.items)[0].text == f"r{n}"
    assert len(io_threads()) == 1
    for disposable in subscriptions:
        disposable.dispose()
    eventually(lambda: not io_threads())


# --- hand_off ---------------------------------------------------------------------------------


def test_a_blocked_subscriber_behind_hand_off_does_not_stall_another_session(
    emu: LensEmulator, client: LensClient
) -> None:
    slow_sid, fast_sid = emu.create_session(), emu.create_session()
    release = threading.Event()
    slow: list[str] = []

    def blocked(event: InferenceResult) -> None:
        release.wait(30)  # held until the other session has everything
        slow.append(str(event.text))

    slow_failed: list[Exception] = []
    slow_sub = (
        client.events(slow_sid, policy=FAST)
        .pipe(only_results(), hand_off(max_queue=100))
        .subscribe(blocked, slow_failed.append)
    )
    fast, fast_sub = subscribe(client.events(fast_sid, policy=FAST).pipe(only_results()))
    emu.wait_readers(slow_sid, 1)
    emu.wait_readers(fast_sid, 1)
    emu.push_many(slow_sid, [payload(i) for i in range(5)])
    emu.push_many(fast_sid, [payload(i) for i in range(5)])
    # Deterministic: the slow subscriber cannot go on before `release`, so everything the
    # fast session gets here went past it on the shared I/O thread.
    fast.wait_for(lambda items: len(items) == 5)
    assert not slow
    release.set()
    eventually(lambda: len(slow) == 5)
    assert slow == [f"r{i}" for i in range(5)] and not slow_failed
    fast_sub.dispose()
    slow_sub.dispose()


def test_without_hand_off_a_blocked_subscriber_stalls_the_io_thread(
    emu: LensEmulator, client: LensClient
) -> None:
    # The documented reason for hand_off: callbacks run on the shared I/O thread.
    slow_sid, fast_sid = emu.create_session(), emu.create_session()
    release, entered = threading.Event(), threading.Event()

    def blocked(event: InferenceResult) -> None:
        entered.set()
        release.wait(30)

    failed: list[Exception] = []
    slow_sub = client.events(slow_sid, policy=FAST).pipe(only_results()).subscribe(
        blocked, failed.append
    )
    fast, fast_sub = subscribe(client.events(fast_sid, policy=FAST).pipe(only_results()))
    emu.wait_readers(slow_sid, 1)
    emu.wait_readers(fast_sid, 1)
    emu.push(slow_sid, payload(0))
    assert entered.wait(10)
    emu.push(fast_sid, payload(1))
    emu.wait_until(fast_sid, lambda s: s.num_outputs >= 1)
    assert fast.items == []
    release.set()
    fast.wait_for(lambda items: len(items) == 1)
    fast_sub.dispose()
    slow_sub.dispose()
    assert not failed


def _hand_off_messages(operator: Any, blocked_until: int) -> tuple[list[Any], list[int]]:
    """Run ``operator`` in virtual time: the source sends a..d at 210..240 and completes at
    250; the subscriber's drain only starts at ``blocked_until``."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        ReactiveTest.on_next(210, "a"),
        ReactiveTest.on_next(220, "b"),
        ReactiveTest.on_next(230, "c"),
        ReactiveTest.on_next(240, "d"),
        ReactiveTest.on_completed(250),
    )

    class Late(TestScheduler):
        """Drains scheduled on it run at ``blocked_until`` (a subscriber busy until then)."""

    def late_schedule(action: Any, state: Any = None) -> Any:
        return scheduler.schedule_absolute(max(blocked_until, scheduler.clock), action, state)

    drain = Late()
    drain.schedule = late_schedule  # type: ignore[method-assign]
    results = scheduler.start(
        lambda: source.pipe(operator(drain)), created=100, subscribed=200, disposed=1000
    )
    return list(results.messages), [s.subscribe for s in source.subscriptions]


def test_hand_off_keeps_order_and_ends_after_the_queue() -> None:
    messages, _ = _hand_off_messages(lambda s: hand_off(10, scheduler=s), blocked_until=300)
    assert messages == [
        ReactiveTest.on_next(300, "a"),
        ReactiveTest.on_next(300, "b"),
        ReactiveTest.on_next(300, "c"),
        ReactiveTest.on_next(300, "d"),
        ReactiveTest.on_completed(300),
    ]


def test_hand_off_drop_oldest_keeps_the_newest_and_warns_once() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages, _ = _hand_off_messages(
            lambda s: hand_off(2, "drop_oldest", scheduler=s), blocked_until=300
        )
    assert messages == [
        ReactiveTest.on_next(300, "c"),
        ReactiveTest.on_next(300, "d"),
        ReactiveTest.on_completed(300),
    ]
    assert sum("dropping the oldest" in str(w.message) for w in caught) == 1


def test_hand_off_full_queue_is_a_typed_error_after_the_queued_items() -> None:
    messages, _ = _hand_off_messages(lambda s: hand_off(2, scheduler=s), blocked_until=300)
    assert [m.value.kind for m in messages] == ["N", "N", "E"]
    assert [m.value.value for m in messages[:2]] == ["a", "b"]
    error = messages[2].value.exception
    assert isinstance(error, HandOffOverflow) and error.max_queue == 2 and not error.retryable


def test_hand_off_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError):
        hand_off(0)
    with pytest.raises(ConfigurationError):
        hand_off(1, "block")  # type: ignore[arg-type]


def test_an_io_loop_restarts_after_its_last_connection(emu: LensEmulator) -> None:
    loop = IOLoop()
    sid = emu.create_session()
    for _ in range(2):
        source = AsyncSSESource(emu.consumer_url(sid), headers=emu.headers, io_loop=loop)
        sink, _ = subscribe(source.pipe(ops.take(1)))
        sink.wait()
        assert sink.completed and "sse.stream.start" in sink.items[0].data
        eventually(lambda: loop.thread is None)
    emu.destroy(sid)


def test_stream_closed_by_the_server_is_retryable(emu: LensEmulator) -> None:
    sid = emu.create_session()
    sink, _ = subscribe(AsyncSSESource(emu.consumer_url(sid), headers=emu.headers))
    emu.wait_readers(sid, 1)
    emu.destroy(sid)
    sink.wait()
    assert isinstance(sink.error, StreamClosed) and sink.error.retryable
    assert "sse.stream.end" in sink.items[-1].data


def test_last_event_id_goes_out_as_utf8(emu: LensEmulator) -> None:
    sid = emu.create_session()
    source = AsyncSSESource(emu.consumer_url(sid), headers=emu.headers, last_event_id="é日")
    _, disposable = subscribe(source)
    emu.wait_readers(sid, 1)
    disposable.dispose()
    # The emulator (http.server) reads header bytes as latin-1.
    assert emu.session_stats(sid).last_event_id == "é日".encode().decode("latin-1")


def test_back_offs_run_on_the_shared_timer_thread_not_a_thread_each(
    emu: LensEmulator, client: LensClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the fan-in ladder: reconnects of 10,000 sessions held 1,838 threads, one
    # TimeoutScheduler timer thread per pending back-off.
    where: list[str] = []
    subscribe_core = AsyncSSESource._subscribe_core

    def recording(self: AsyncSSESource, observer: Any, scheduler: Any = None) -> Any:
        where.append(threading.current_thread().name)
        return subscribe_core(self, observer, scheduler)

    monkeypatch.setattr(AsyncSSESource, "_subscribe_core", recording)
    sid = emu.create_session(faults=Faults(drop_after=1, drops=3))
    policy = RetryPolicy(base=0.01, cap=0.01, jitter=0.0, max_attempts=20)
    sink, disposable = subscribe(client.events(sid, policy=policy).pipe(only_results()))
    emu.wait_readers(sid, 1)
    emu.push_many(sid, [payload(i) for i in range(6)])
    sink.wait_for(lambda items: len(items) >= 6)
    disposable.dispose()
    assert [r.text for r in sink.items] == [f"r{i}" for i in range(6)]
    assert len(where) >= 4
    assert set(where[1:]) == {"rxlens-timers"}, where


# --- timeouts and the opening gate ------------------------------------------------------------


def test_a_stream_silent_after_its_head_is_a_read_timeout() -> None:
    from sse_server import ScriptedServer, sse

    from rxlens.errors import ReadTimeout

    with ScriptedServer() as srv:
        srv.add(sse(b"id: 1\ndata: a\n\n", then="hold"))
        loop = IOLoop()
        source = AsyncSSESource(srv.url, io_loop=loop, timeout=(5.0, 0.4))
        sink, _ = subscribe(source)
        sink.wait(10)
        assert [e.data for e in sink.items] == ["a"]
        assert isinstance(sink.error, ReadTimeout), repr(sink.error)
        assert "no bytes" in str(sink.error) and sink.error.retryable
        loop.close()


def test_read_timeouts_of_a_loop_follow_the_shortest_and_spare_streams_that_move() -> None:
    # Every stream of a loop is watched by one timer whose period is a quarter of the
    # shortest read timeout: a stream with a short timeout opened after one with a long
    # timeout is still caught on time, and a stream whose bytes keep coming is never failed.
    from sse_server import Handler, ScriptedServer, sse

    from rxlens.errors import ReadTimeout

    stop = threading.Event()

    def trickle(h: Handler) -> None:
        h.start_sse()
        n = 0
        while not stop.is_set():
            n += 1
            h.write(b"id: %d\ndata: t\n\n" % n)
            time.sleep(0.05)
        h.end()

    with ScriptedServer() as srv:
        srv.add(trickle, sse(b"id: 1\ndata: a\n\n", then="hold"))
        loop = IOLoop()
        long_sink, long_sub = subscribe(AsyncSSESource(srv.url, io_loop=loop, timeout=(5.0, 30.0)))
        long_sink.wait_items(1)
        started = time.monotonic()
        short_sink, _ = subscribe(AsyncSSESource(srv.url, io_loop=loop, timeout=(5.0, 0.3)))
        short_sink.wait(10)
        took = time.monotonic() - started
        assert isinstance(short_sink.error, ReadTimeout), repr(short_sink.error)
        assert took < 3.0, took  # not the long stream's 7.5 s period
        time.sleep(0.5)  # more sweeps at the short period while the long stream moves
        assert long_sink.error is None and not long_sink.completed
        before = len(long_sink.items)
        eventually(lambda: len(long_sink.items) > before)
        long_sub.dispose()
        stop.set()
        loop.close()


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    from sse_server import Handler, ScriptedServer

    from rxlens.errors import ReadTimeout

    def silent(h: Handler) -> None:
        h.hold()

    with ScriptedServer() as srv:
        srv.add(silent)
        loop = IOLoop()
        sink, _ = subscribe(AsyncSSESource(srv.url, io_loop=loop, timeout=(0.5, 0.5)))
        sink.wait(10)
        assert isinstance(sink.error, ReadTimeout), repr(sink.error)
        assert "no response" in str(sink.error)
        loop.close()


def test_at_most_opening_connections_are_being_opened_at_once() -> None:
    # Each answer's head comes after a pause: with a gate of 3, the server never has more than
    # 3 requests waiting for their head, and all 12 streams still open, one turn after another.
    from sse_server import Handler, ScriptedServer

    waiting = 0
    most = 0
    lock = threading.Lock()

    def slow_head(h: Handler) -> None:
        nonlocal waiting, most
        with lock:
            waiting += 1
            most = max(most, waiting)
        time.sleep(0.2)
        with lock:
            waiting -= 1
        h.start_sse()
        h.write(b"id: 1\ndata: a\n\n")
        h.hold()

    with ScriptedServer() as srv:
        srv.add(slow_head)
        loop = IOLoop()
        loop.opening = 3
        sinks = [subscribe(AsyncSSESource(srv.url, io_loop=loop))[0] for _ in range(12)]
        for sink in sinks:
            sink.wait_items(1, timeout=20)
        assert most == 3, most
        loop.close()


# --- local failures: typed, never retried (as the threaded source) ------------------------------


def test_a_bug_on_the_io_thread_ends_the_subscription_typed_and_unretried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sse_server import ScriptedServer, frames, sse

    from rxlens.errors import LocalError
    from rxlens.sse import Decoder

    bug = TypeError("a bug in the decoder")

    class Broken(Decoder):
        def feed(self, chunk: bytes) -> list[Event]:
            raise bug

    monkeypatch.setattr("rxlens.sse._aio.Decoder", Broken)
    with ScriptedServer() as srv:
        srv.add(sse(frames(range(2))))
        loop = IOLoop()
        from rxlens.operators import resume

        sink, _ = subscribe(AsyncSSESource(srv.url, io_loop=loop).pipe(resume(FAST)))
        sink.wait()
        assert isinstance(sink.error, LocalError) and not sink.error.retryable, repr(sink.error)
        assert sink.error.__cause__ is bug
        assert srv.connections == 1
        loop.close()


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb"])
def test_a_header_http_cannot_carry_is_a_local_error_not_retried(value: str) -> None:
    from sse_server import ScriptedServer, frames, sse

    from rxlens.errors import LocalError
    from rxlens.operators import resume

    with ScriptedServer() as srv:
        srv.add(sse(frames(range(1))))
        loop = IOLoop()
        source = AsyncSSESource(srv.url, io_loop=loop, headers={"X-Value": value})
        sink, _ = subscribe(source.pipe(resume(FAST)))
        sink.wait()
        assert isinstance(sink.error, LocalError) and not sink.error.retryable, repr(sink.error)
        assert value not in str(sink.error) and srv.connections == 0
        loop.close()


def test_bytes_received_before_a_cut_are_delivered_and_move_the_cursor() -> None:
    # A short stream cut at once: its bytes and the cut often arrive together, before the
    # first read. Every event in them is delivered, and the reconnect resumes after the last.
    from sse_server import ScriptedServer, frames, sse

    from rxlens.operators import resume

    for _ in range(10):
        with ScriptedServer() as srv:
            srv.add(sse(frames(range(1, 5)), then="drop"), sse(frames(range(5, 7))))
            loop = IOLoop()
            source = AsyncSSESource(srv.url, io_loop=loop)
            sink, _ = subscribe(source.pipe(resume(RetryPolicy.immediate(max_attempts=3))))
            sink.wait_items(6)
            assert [e.id for e in sink.items[:6]] == [str(i) for i in range(1, 7)]
            assert srv.requests[1].get("last-event-id") == "4"
            loop.close()
