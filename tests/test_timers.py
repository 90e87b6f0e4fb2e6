"""SharedTimers: one thread for many timers, gone when none is pending."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rxlens._timers import SharedTimers


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def timer_threads() -> int:
    return sum(t.name == "rxlens-timers" for t in threading.enumerate())


def test_timers_fire_in_due_order_on_one_thread() -> None:
    timers = SharedTimers()
    fired: list[tuple[int, str]] = []
    done = threading.Event()

    def action(n: int) -> Any:
        def run(_s: Any, _st: Any) -> None:
            fired.append((n, threading.current_thread().name))
            if len(fired) == 3:
                done.set()

        return run

    timers.schedule_relative(0.06, action(3))
    timers.schedule_relative(0.02, action(1))
    timers.schedule_relative(0.04, action(2))
    assert done.wait(5)
    assert [n for n, _ in fired] == [1, 2, 3]
    assert {name for _, name in fired} == {"rxlens-timers"}


def test_many_timers_one_thread() -> None:
    timers = SharedTimers()
    before = timer_threads()
    handles = [timers.schedule_relative(30, lambda _s, _st: None) for _ in range(500)]
    assert timer_threads() == before + 1
    assert timers.pending == 500
    for handle in handles:
        handle.dispose()
    wait_until(lambda: not timers.running)
    assert timer_threads() == before and timers.pending == 0


def test_cancelled_timer_does_not_fire() -> None:
    timers = SharedTimers()
    fired: list[str] = []
    handle = timers.schedule_relative(0.05, lambda _s, _st: fired.append("cancelled"))
    timers.schedule_relative(0.1, lambda _s, _st: fired.append("kept"))
    handle.dispose()
    wait_until(lambda: not timers.running)
    assert fired == ["kept"]


def test_thread_ends_when_the_last_timer_fires_and_restarts_on_demand() -> None:
    timers = SharedTimers()
    ran = threading.Event()
    timers.schedule_relative(0.01, lambda _s, _st: ran.set())
    assert ran.wait(5)
    wait_until(lambda: not timers.running)
    again = threading.Event()
    timers.schedule(lambda _s, _st: again.set())
    assert again.wait(5)


def test_an_action_may_rearm_itself() -> None:
    timers = SharedTimers()
    count = [0]
    done = threading.Event()

    def tick(scheduler: Any, _st: Any) -> None:
        count[0] += 1
        if count[0] < 5:
            scheduler.schedule_relative(0.001, tick)
        else:
            done.set()

    timers.schedule(tick)
    assert done.wait(5) and count[0] == 5


def test_a_raising_action_is_logged_and_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    timers = SharedTimers()
    ran = threading.Event()

    def boom(_s: Any, _st: Any) -> None:
        raise RuntimeError("boom")

    timers.schedule_relative(0.01, boom)
    timers.schedule_relative(0.02, lambda _s, _st: ran.set())
    assert ran.wait(5)
    assert any("timer action raised" in r.message for r in caplog.records)


def test_dispose_after_firing_is_harmless() -> None:
    timers = SharedTimers()
    ran = threading.Event()
    handle = timers.schedule(lambda _s, _st: ran.set())
    assert ran.wait(5)
    handle.dispose()
    wait_until(lambda: not timers.running)
    assert timers.pending == 0


def test_a_fired_timer_set_again_fires_again_with_its_action_and_state() -> None:
    timers = SharedTimers()
    fired: list[Any] = []
    done = threading.Event()

    def action(_s: Any, state: Any) -> None:
        fired.append(state)
        if len(fired) == 3:
            done.set()
        else:
            timers.reschedule(timer, 0.01)  # from inside its own action, as a heartbeat does

    timer = timers.schedule_relative(0.01, action, "s")
    assert done.wait(5)
    assert fired == ["s", "s", "s"]
    wait_until(lambda: not timers.running)
    assert timers.pending == 0


def test_a_pending_timer_set_again_fires_once_at_the_new_time() -> None:
    timers = SharedTimers()
    fired: list[float] = []
    started = time.monotonic()
    timer = timers.schedule_relative(0.02, lambda _s, _st: fired.append(time.monotonic()))
    timers.reschedule(timer, 0.3)
    assert timers.pending == 1
    wait_until(lambda: bool(fired))
    wait_until(lambda: not timers.running)
    assert len(fired) == 1
    assert fired[0] - started >= 0.3  # the earlier time no longer counts


def test_a_disposed_timer_stays_disposed_when_set_again() -> None:
    timers = SharedTimers()
    fired: list[str] = []
    timer = timers.schedule_relative(30, lambda _s, _st: fired.append("x"))
    timer.dispose()
    timers.reschedule(timer, 0.01)
    assert timers.pending == 0
    wait_until(lambda: not timers.running)
    time.sleep(0.05)
    assert fired == []


def test_a_timer_of_another_scheduler_is_refused() -> None:
    mine, other = SharedTimers(), SharedTimers()
    timer = other.schedule_relative(30, lambda _s, _st: None)
    with pytest.raises(ValueError, match="another scheduler"):
        mine.reschedule(timer, 1)
    timer.dispose()


def test_a_timer_set_again_makes_no_object_for_the_collector() -> None:
    # Why it matters: at 10,000 sessions each heartbeat timer lives for its whole silence
    # period, long enough to reach the collector's oldest generation (see SharedTimer).
    import gc

    timers = SharedTimers()
    timer = timers.schedule_relative(30, lambda _s, _st: None)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(1000):
        timers.reschedule(timer, 30)
    gc.collect()  # the heap's (due, order) pairs hold only numbers: untracked
    assert len(gc.get_objects()) - before < 50
    timer.dispose()


class _NoThreadOnce:
    """Stands in for ``threading.Thread`` in rxlens._timers: the first start() fails as at the
    process's thread limit, the later ones start real threads."""

    failures = 0
    real = threading.Thread

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._thread = _NoThreadOnce.real(*args, **kwargs)

    def start(self) -> None:
        if _NoThreadOnce.failures == 0:
            _NoThreadOnce.failures += 1
            raise RuntimeError("can't start new thread")
        self._thread.start()


@pytest.mark.parametrize("fused", [False, True], ids=["heartbeat_timeout", "events_preset"])
def test_a_timeout_whose_thread_cannot_start_is_delivered_late_not_lost(
    monkeypatch: pytest.MonkeyPatch, fused: bool
) -> None:
    # Before, off_timer_thread raised on the shared timer thread, which logged it: the
    # timeout was never delivered and a silent connection was waited on forever.
    from reactivex import Observable
    from reactivex.subject import Subject

    import rxlens._timers as timers_module
    from rxlens import RetryPolicy
    from rxlens.errors import HeartbeatTimeout, RetriesExhausted
    from rxlens.operators import events_preset, heartbeat_timeout

    monkeypatch.setattr(timers_module, "RETRY_HAND_OFF", 0.05)
    monkeypatch.setattr("rxlens.sse._fused.RETRY_HAND_OFF", 0.05)
    monkeypatch.setattr("rxlens.operators._heartbeat_timeout.RETRY_HAND_OFF", 0.05)
    timers = SharedTimers()
    timers.schedule_relative(30, lambda _s, _st: None)  # its thread runs: only hand-offs fail
    # Only rxlens._timers sees the failing Thread (others, as threading.Timer, keep theirs).
    import types

    fake = types.SimpleNamespace(
        Thread=_NoThreadOnce, Condition=threading.Condition, Lock=threading.Lock
    )
    monkeypatch.setattr(timers_module, "threading", fake)
    _NoThreadOnce.failures = 0
    silent: Subject[Any] = Subject()
    errors: list[Exception] = []
    done = threading.Event()
    if fused:
        stream: Observable[Any] = silent.pipe(
            events_preset(
                heartbeat_timeout=0.05,
                policy=RetryPolicy(max_attempts=1),
                heartbeat_scheduler=timers,
            )
        )
    else:
        stream = silent.pipe(heartbeat_timeout(0.05, scheduler=timers))
    stream.subscribe(on_error=lambda e: (errors.append(e), done.set()))
    assert done.wait(5), "the timeout was never delivered"
    assert _NoThreadOnce.failures == 1, errors
    error = errors[0]
    if isinstance(error, RetriesExhausted):
        error = error.last_error  # type: ignore[assignment]
    assert isinstance(error, HeartbeatTimeout), repr(errors[0])
