"""heartbeat_timeout: virtual-time tests, and the race between a late item and the timer."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.scheduler import VirtualTimeScheduler
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens._timers import SharedTimers
from rxlens.errors import HeartbeatTimeout, MalformedEventError, RxLensError
from rxlens.events import Heartbeat, InferenceResult, OnMalformed
from rxlens.operators import _heartbeat_timeout as _heartbeat_timeout_module
from rxlens.operators import heartbeat_timeout, only_results, typed_heartbeat_timeout
from rxlens.sse import Event

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)
subscribe = ReactiveTest.subscribe

H = Heartbeat("lsn-1")
DROPPED = ConnectionError("reset")
R = InferenceResult(["x"])


def timed_out(seconds: float, last_frame_at: float) -> Any:
    def predicate(error: Exception) -> bool:
        return (
            isinstance(error, HeartbeatTimeout)
            and error.seconds == seconds
            and error.last_frame_at == last_frame_at
        )

    return predicate


def test_every_item_resets_the_timer_then_silence_fails() -> None:
    scheduler = TestScheduler()
    xs: Any = scheduler.create_hot_observable(
        on_next(210, H), on_next(225, R), on_next(239, H), on_next(260, R)
    )
    results = scheduler.start(lambda: xs.pipe(heartbeat_timeout(15)))
    # Expected on the left: reactivex compares error predicates only from that side.
    assert [
        on_next(210, H),
        on_next(225, R),
        on_next(239, H),
        on_error(254, timed_out(15, 239.0)),
    ] == results.messages
    assert xs.subscriptions == [subscribe(200, 254)]


def test_silence_from_the_start_counts_from_subscription() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(230, H))
    results = scheduler.start(lambda: xs.pipe(heartbeat_timeout(10)))
    assert [on_error(210, timed_out(10, 200.0))] == results.messages
    assert xs.subscriptions == [subscribe(200, 210)]


def test_error_is_retryable_timeout() -> None:
    error = HeartbeatTimeout(15, 239.0)
    assert isinstance(error, TimeoutError) and isinstance(error, RxLensError) and error.retryable


def test_completion_and_errors_pass_and_cancel_the_timer() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(205, H), on_completed(212))
    results = scheduler.start(lambda: xs.pipe(heartbeat_timeout(10)))
    assert results.messages == [on_next(205, H), on_completed(212)]
    assert xs.subscriptions == [subscribe(200, 212)]
    # No timer left behind: nothing is queued after completion.
    assert len(scheduler._queue) == 0

    scheduler = TestScheduler()
    boom = ConnectionError("reset")
    ys = scheduler.create_hot_observable(on_error(205, boom))
    results = scheduler.start(lambda: ys.pipe(heartbeat_timeout(10)))
    assert results.messages == [on_error(205, boom)]
    assert len(scheduler._queue) == 0


def test_disposal_cancels_the_timer() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(205, H))
    results = scheduler.start(lambda: xs.pipe(heartbeat_timeout(10)), disposed=208)
    assert results.messages == [on_next(205, H)]
    assert xs.subscriptions == [subscribe(200, 208)]
    scheduler.advance_to(1000)
    assert results.messages == [on_next(205, H)]


def test_goes_before_only_results_because_heartbeats_keep_it_alive() -> None:
    beats = [on_next(200 + t, H) for t in range(5, 60, 5)]
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*beats, on_next(262, R), on_completed(270))
    right = scheduler.start(lambda: xs.pipe(heartbeat_timeout(8), only_results()))
    assert right.messages == [on_next(262, R), on_completed(270)]

    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*beats, on_next(262, R), on_completed(270))
    wrong = scheduler.start(lambda: xs.pipe(only_results(), heartbeat_timeout(8)))
    assert [on_error(208, timed_out(8, 200.0))] == wrong.messages


def test_scheduler_argument_wins_over_the_subscription_scheduler() -> None:
    own = TestScheduler()
    other = TestScheduler()
    results: list[Any] = []
    reactivex.never().pipe(heartbeat_timeout(5, scheduler=own)).subscribe(
        on_error=results.append, scheduler=other
    )
    other.advance_to(100)
    assert results == []
    own.advance_to(5)
    assert len(results) == 1 and isinstance(results[0], HeartbeatTimeout)


def test_subscription_scheduler_is_used_and_forwarded() -> None:
    scheduler = TestScheduler()
    seen: list[Any] = []

    def source(observer: Any, sched: Any = None) -> Any:
        seen.append(sched)
        return reactivex.disposable.Disposable()

    errors: list[Exception] = []
    reactivex.create(source).pipe(heartbeat_timeout(3)).subscribe(
        on_error=errors.append, scheduler=scheduler
    )
    assert seen == [scheduler]
    scheduler.advance_to(3)
    assert len(errors) == 1


def test_works_on_any_observable() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(201, 1), on_next(203, "a"), on_completed(204))
    results = scheduler.start(lambda: xs.pipe(heartbeat_timeout(5), ops.map(str)))
    assert results.messages == [on_next(201, "1"), on_next(203, "a"), on_completed(204)]


def test_state_is_per_subscription() -> None:
    scheduler = TestScheduler()
    op = heartbeat_timeout(5)
    xs = scheduler.create_cold_observable(on_next(2, H), on_next(4, H))
    a: list[Any] = []
    b: list[Any] = []
    xs.pipe(op).subscribe(a.append, a.append, scheduler=scheduler)
    scheduler.advance_to(3)
    xs.pipe(op).subscribe(b.append, b.append, scheduler=scheduler)
    scheduler.advance_to(100)
    assert a[:2] == [H, H] and isinstance(a[2], HeartbeatTimeout) and a[2].last_frame_at == 4
    assert b[:2] == [H, H] and isinstance(b[2], HeartbeatTimeout) and b[2].last_frame_at == 7


@pytest.mark.parametrize("seconds", [0, -1.0])
def test_seconds_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        heartbeat_timeout(seconds)


class ManualScheduler(VirtualTimeScheduler):
    """Records timers instead of running them, so a test can fire one at any moment and on
    any thread; its clock (``t``, seconds) moves only when the test sets it."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0
        self.timers: list[tuple[Any, Disposable]] = []

    @property
    def now(self) -> datetime:
        return datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=self.t)

    @staticmethod
    def add(absolute: Any, relative: Any) -> Any:
        return absolute + relative

    def schedule(self, action: Any, state: Any = None) -> Disposable:
        return self.schedule_relative(0, action, state)

    def schedule_relative(self, duetime: Any, action: Any, state: Any = None) -> Disposable:
        disposable = Disposable()
        self.timers.append((lambda: action(self, state), disposable))
        return disposable

    def schedule_absolute(self, duetime: Any, action: Any, state: Any = None) -> Disposable:
        return self.schedule_relative(0, action, state)


def test_one_timer_rearms_for_the_remainder_after_an_item() -> None:
    scheduler = ManualScheduler()
    subject: reactivex.subject.Subject[int] = reactivex.subject.Subject()
    log: list[Any] = []
    subject.pipe(heartbeat_timeout(5, scheduler=scheduler)).subscribe(log.append, log.append)
    scheduler.t = 3
    subject.on_next(1)
    assert len(scheduler.timers) == 1  # items do not arm timers
    scheduler.t = 5
    scheduler.timers[0][0]()  # 2 s of silence only: re-arm for the 3 s left
    assert log == [1] and len(scheduler.timers) == 2
    scheduler.t = 8
    scheduler.timers[1][0]()
    assert log[0] == 1 and isinstance(log[1], HeartbeatTimeout)
    assert log[1].last_frame_at == datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() + 3
    subject.on_next(2)  # late item after the error: dropped
    scheduler.timers[1][0]()
    assert len(log) == 2
    assert scheduler.timers[1][1].is_disposed


def test_timer_waits_for_an_item_being_delivered() -> None:
    # The timer fires on another thread while the item's on_next is still running: the error
    # must wait for on_next to return, never overlap it.
    scheduler = ManualScheduler()
    subject: reactivex.subject.Subject[int] = reactivex.subject.Subject()
    log: list[Any] = []
    entered = threading.Event()
    release = threading.Event()

    def on_next(value: int) -> None:
        entered.set()
        release.wait(10)
        log.append(value)

    subject.pipe(heartbeat_timeout(5, scheduler=scheduler)).subscribe(on_next, log.append)
    pusher = threading.Thread(target=subject.on_next, args=(1,))
    pusher.start()
    assert entered.wait(10)
    scheduler.t = 10  # the item arrived at 0: by now the silence is long enough
    fire, _ = scheduler.timers[-1]
    firer = threading.Thread(target=fire)
    firer.start()
    firer.join(0.2)
    blocked = firer.is_alive()
    release.set()
    pusher.join(10)
    firer.join(10)
    assert blocked, "the timer did not wait for the item being delivered"
    assert log[0] == 1 and isinstance(log[1], HeartbeatTimeout) and len(log) == 2


def test_many_items_racing_the_timer_keep_the_grammar() -> None:
    # Items on one thread, the timer on another, many times over: items, then at most one
    # error, never an item after it and never two notifications at once.
    for _ in range(100):
        race_once()


def race_once() -> None:
    scheduler = VirtualTimeScheduler()
    subject: reactivex.subject.Subject[int] = reactivex.subject.Subject()
    log: list[Any] = []
    inside = threading.Lock()
    overlap: list[bool] = []

    def record(value: Any) -> None:
        if not inside.acquire(blocking=False):
            overlap.append(True)
            return
        try:
            log.append(value)
        finally:
            inside.release()

    subject.pipe(heartbeat_timeout(1, scheduler=scheduler)).subscribe(
        record, record, scheduler=scheduler
    )
    start = threading.Barrier(2)

    def push() -> None:
        start.wait()
        for i in range(20):
            subject.on_next(i)

    def fire() -> None:
        start.wait()
        scheduler.advance_by(1)

    threads = [threading.Thread(target=push), threading.Thread(target=fire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert not overlap
    errors = [i for i, v in enumerate(log) if isinstance(v, HeartbeatTimeout)]
    assert len(errors) <= 1
    if errors:
        assert errors[0] == len(log) - 1


# --- the shared timer thread: one slow subscriber must not hold up the others' timeouts --------


def test_a_blocked_on_error_does_not_delay_other_timeouts() -> None:
    # Subscription A's on_error blocks until released; B's timeout, due later, must still be
    # delivered meanwhile. (Real time on the shared timer thread; synchronised by events only.)
    a_entered, release, b_done = threading.Event(), threading.Event(), threading.Event()
    b_errors: list[Exception] = []

    def a_on_error(_error: Exception) -> None:
        a_entered.set()
        release.wait(30)

    def b_on_error(error: Exception) -> None:
        b_errors.append(error)
        b_done.set()

    a = reactivex.never().pipe(heartbeat_timeout(0.01)).subscribe(on_error=a_on_error)
    try:
        assert a_entered.wait(10), "A's timeout never came"
        b = reactivex.never().pipe(heartbeat_timeout(0.01)).subscribe(on_error=b_on_error)
        try:
            assert b_done.wait(10), "B's timeout waited for A's on_error"
            assert isinstance(b_errors[0], HeartbeatTimeout)
        finally:
            b.dispose()
    finally:
        release.set()
        a.dispose()


def test_a_blocked_on_next_does_not_delay_other_timeouts() -> None:
    # A's subscriber is stuck in on_next (holding A's lock) past A's timeout: A's timer must
    # not block the shared thread waiting for that lock, or B's timeout never comes.
    a_entered, release, b_done = threading.Event(), threading.Event(), threading.Event()
    a_log: list[Any] = []
    subject: reactivex.subject.Subject[int] = reactivex.subject.Subject()

    def a_on_next(value: int) -> None:
        a_entered.set()
        release.wait(30)
        a_log.append(value)

    a_done = threading.Event()

    def a_on_error(error: Exception) -> None:
        a_log.append(error)
        a_done.set()

    a = subject.pipe(heartbeat_timeout(0.01)).subscribe(a_on_next, a_on_error)
    pusher = threading.Thread(target=subject.on_next, args=(1,), daemon=True)
    pusher.start()
    try:
        assert a_entered.wait(10)
        b = reactivex.never().pipe(heartbeat_timeout(0.05)).subscribe(
            on_error=lambda _e: b_done.set()
        )
        try:
            assert b_done.wait(10), "B's timeout waited for A's subscriber"
        finally:
            b.dispose()
    finally:
        release.set()
        pusher.join(10)
    # A's own timeout still comes, after its item, never overlapping it.
    assert a_done.wait(10)
    a.dispose()
    assert a_log[0] == 1 and isinstance(a_log[1], HeartbeatTimeout) and len(a_log) == 2


# --- typed_heartbeat_timeout: the fused step, on its own ----------------------------------------

RESULT_FRAME = Event('{"type": "inference.result", "event_data": {"response": ["ok"]}}', id="1")
BEAT_FRAME = Event('{"type": "sse.stream.heartbeat", "event_data": {"session_id": "lsn-1"}}')
BAD_FRAME = Event("{not json", id="2")


def test_typed_heartbeat_timeout_refuses_an_unknown_policy_and_bad_seconds() -> None:
    with pytest.raises(ValueError, match="on_malformed"):
        typed_heartbeat_timeout(5, on_malformed="ignore")  # type: ignore[arg-type]
    for seconds in (0, -1.0):
        with pytest.raises(ValueError, match="seconds"):
            typed_heartbeat_timeout(seconds)


@pytest.mark.parametrize("policy", ["emit", "skip", "raise"])
def test_typed_heartbeat_timeout_decodes_frames_and_times_out(policy: OnMalformed) -> None:
    # Any positive timeout, however short, and every policy: frames become typed events.
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(200.25, RESULT_FRAME), on_next(200.5, BEAT_FRAME)
    )
    results = scheduler.start(
        lambda: xs.pipe(typed_heartbeat_timeout(0.5, on_malformed=policy, scheduler=scheduler))
    )
    events = [m.value.value for m in results.messages if m.value.kind == "N"]
    assert [type(e) for e in events] == [InferenceResult, Heartbeat]
    assert [m.time for m in results.messages] == [200.25, 200.5, 201.0]
    assert isinstance(results.messages[-1].value.exception, HeartbeatTimeout)


def test_a_skipped_frame_delivers_nothing_and_rearms_nothing() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(203, BAD_FRAME), on_next(209, RESULT_FRAME))
    results = scheduler.start(
        lambda: xs.pipe(typed_heartbeat_timeout(5, on_malformed="skip", scheduler=scheduler))
    )
    assert [on_error(205, timed_out(5, 200.0))] == results.messages


def test_a_malformed_frame_under_raise_fails_and_disposes_the_source() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(202, RESULT_FRAME), on_next(203, BAD_FRAME), on_next(204, RESULT_FRAME)
    )
    results = scheduler.start(
        lambda: xs.pipe(typed_heartbeat_timeout(5, on_malformed="raise", scheduler=scheduler))
    )
    assert [m.time for m in results.messages] == [202, 203]
    assert isinstance(results.messages[1].value.exception, MalformedEventError)
    assert xs.subscriptions == [subscribe(200, 203)]


class InFlight(Observable[Any]):
    """A source whose frames reach the operator directly, as a frame does that a reader thread
    had already passed to the operator (past RxPY's own check that the subscription is live)
    when the stream ended on another thread: its ``push`` models that frame, arriving late."""

    def __init__(self) -> None:
        super().__init__()
        self.push: Any = None

    def subscribe(self, on_next: Any = None, *_args: Any, **_kwargs: Any) -> Any:
        self.push = on_next
        return Disposable()


def test_a_frame_in_flight_at_the_timeout_is_not_decoded() -> None:
    scheduler = TestScheduler()
    source = InFlight()
    unidentified: list[Any] = []
    log: list[Any] = []
    op = typed_heartbeat_timeout(5, on_unidentified=unidentified.append, scheduler=scheduler)
    source.pipe(op).subscribe(log.append, log.append)
    source.push(BEAT_FRAME)
    scheduler.advance_to(10)
    assert len(log) == 2 and isinstance(log[1], HeartbeatTimeout) and len(unidentified) == 1
    source.push(BEAT_FRAME)  # in flight as the timeout came: nothing sees it
    assert len(log) == 2 and len(unidentified) == 1


# --- a timer that fires as the stream ends ------------------------------------------------------


@pytest.mark.parametrize("end", ["completed", "error", "malformed"])
def test_a_late_timer_after_the_end_arms_nothing(end: str) -> None:
    # The timer fired (on its thread) as the stream ended: it finds the stream over and
    # neither times out nor arms another timer.
    scheduler = ManualScheduler()
    subject: reactivex.subject.Subject[Event] = reactivex.subject.Subject()
    log: list[Any] = []
    op = typed_heartbeat_timeout(5, on_malformed="raise", scheduler=scheduler)
    subject.pipe(op).subscribe(log.append, log.append, lambda: log.append("done"))
    scheduler.t = 3
    subject.on_next(RESULT_FRAME)
    scheduler.t = 4
    if end == "completed":
        subject.on_completed()
    elif end == "error":
        subject.on_error(DROPPED)
    else:
        subject.on_next(BAD_FRAME)
    scheduler.t = 5
    scheduler.timers[0][0]()
    assert len(scheduler.timers) == 1
    assert isinstance(log[0], InferenceResult) and len(log) == 2
    assert log[1] == "done" if end == "completed" else isinstance(log[1], Exception)
    assert not isinstance(log[1], HeartbeatTimeout)


def test_a_remainder_under_a_second_is_waited_for() -> None:
    scheduler = ManualScheduler()
    subject: reactivex.subject.Subject[int] = reactivex.subject.Subject()
    log: list[Any] = []
    subject.pipe(heartbeat_timeout(5, scheduler=scheduler)).subscribe(log.append, log.append)
    scheduler.t = 0.5
    subject.on_next(1)
    scheduler.t = 5
    scheduler.timers[0][0]()  # 4.5 s of silence: 0.5 s to go
    assert log == [1] and len(scheduler.timers) == 2
    scheduler.t = 5.5
    scheduler.timers[1][0]()
    assert isinstance(log[1], HeartbeatTimeout)


def test_a_remainder_within_a_nanosecond_is_due() -> None:
    # Clock arithmetic leaves rounding crumbs: a remainder of 1e-9 s or less counts as none.
    scheduler = ManualScheduler()
    log: list[Any] = []
    reactivex.never().pipe(heartbeat_timeout(1e-9, scheduler=scheduler)).subscribe(
        on_error=log.append
    )
    scheduler.timers[0][0]()  # the clock has not moved: exactly 1e-9 s remain
    assert len(scheduler.timers) == 1 and isinstance(log[0], HeartbeatTimeout)


# --- the shared timer thread, with its clock held by the test -----------------------------------


class HeldSharedTimers(SharedTimers):
    """The shared-timer scheduler, its timers recorded (with their delays) instead of run."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[tuple[float, Any]] = []

    def schedule_relative(self, duetime: Any, action: Any, state: Any = None) -> Any:
        self.timers.append((self.to_seconds(duetime), lambda: action(self, state)))
        return Disposable()


class HeldClock:
    """Stands in for the ``time`` module the operator reads its real-time clock from."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> tuple[HeldSharedTimers, HeldClock, list[Any]]:
    """A held shared-timer scheduler, the clock, and the work handed off the timer thread."""
    clock = HeldClock()
    handed_off: list[Any] = []
    monkeypatch.setattr(_heartbeat_timeout_module, "time", clock)
    def hand_off(work: Any) -> bool:
        handed_off.append(work)
        return True  # started (off_timer_thread says False when no thread could start)

    monkeypatch.setattr(_heartbeat_timeout_module, "off_timer_thread", hand_off)
    return HeldSharedTimers(), clock, handed_off


def test_the_timer_thread_rearms_itself_and_hands_off_only_the_timeout(
    held: tuple[HeldSharedTimers, HeldClock, list[Any]],
) -> None:
    timers, clock, handed_off = held
    subject: reactivex.subject.Subject[int] = reactivex.subject.Subject()
    log: list[Any] = []
    subject.pipe(heartbeat_timeout(5, scheduler=timers)).subscribe(log.append, log.append)
    assert [delay for delay, _ in timers.timers] == [5]
    clock.t += 0.5
    subject.on_next(1)
    clock.t += 4.5
    timers.timers[0][1]()  # an item came: re-armed for the 0.5 s left, on the timer thread
    assert [delay for delay, _ in timers.timers] == [5, 0.5] and handed_off == []
    clock.t += 0.5
    timers.timers[1][1]()  # silence: the timeout goes to a thread of its own
    assert len(handed_off) == 1 and log == [1]
    handed_off[0]()
    assert log[0] == 1 and isinstance(log[1], HeartbeatTimeout) and log[1].seconds == 5


def test_a_late_shared_timer_after_the_end_does_nothing(
    held: tuple[HeldSharedTimers, HeldClock, list[Any]],
) -> None:
    timers, clock, handed_off = held
    for silence in (1.0, 10.0):  # an item came meanwhile, or none did
        subject: reactivex.subject.Subject[int] = reactivex.subject.Subject()
        timers.timers.clear()
        subject.pipe(heartbeat_timeout(5, scheduler=timers)).subscribe()
        subject.on_completed()
        clock.t += silence
        timers.timers[0][1]()
        assert len(timers.timers) == 1 and handed_off == []


def test_on_the_timer_thread_a_remainder_within_a_nanosecond_is_due(
    held: tuple[HeldSharedTimers, HeldClock, list[Any]],
) -> None:
    timers, _clock, handed_off = held
    reactivex.never().pipe(heartbeat_timeout(1e-9, scheduler=timers)).subscribe()
    timers.timers[0][1]()  # the clock has not moved: exactly 1e-9 s remain, which is due
    assert len(timers.timers) == 1 and len(handed_off) == 1
