"""until_end: virtual-time tests."""

from __future__ import annotations

from typing import Any

import reactivex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

import rxlens.testing
from rxlens.events import Heartbeat, InferenceResult, StreamEnd
from rxlens.operators import until_end
from rxlens.testing import TimedStream
from rxlens.testing.strategies import lens_streams

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)
subscribe = ReactiveTest.subscribe

R1 = InferenceResult(["one"])
R2 = InferenceResult(["two"])
END = StreamEnd({"num_messages": 2})


def hot(scheduler: TestScheduler) -> Any:
    return scheduler.create_hot_observable(
        on_next(210, R1),
        on_next(220, Heartbeat("lsn-1")),
        on_next(230, END),
        on_next(240, R2),
        on_completed(250),
    )


def test_until_end_inclusive_emits_the_end_then_completes_and_disposes() -> None:
    scheduler = TestScheduler()
    xs = hot(scheduler)
    results = scheduler.start(lambda: xs.pipe(until_end()))
    assert results.messages == [
        on_next(210, R1),
        on_next(220, Heartbeat("lsn-1")),
        on_next(230, END),
        on_completed(230),
    ]
    assert xs.subscriptions == [subscribe(200, 230)]


def test_until_end_exclusive() -> None:
    scheduler = TestScheduler()
    xs = hot(scheduler)
    results = scheduler.start(lambda: xs.pipe(until_end(inclusive=False)))
    assert results.messages == [
        on_next(210, R1),
        on_next(220, Heartbeat("lsn-1")),
        on_completed(230),
    ]
    assert xs.subscriptions == [subscribe(200, 230)]


def test_until_end_mirrors_a_source_that_ends_first() -> None:
    scheduler = TestScheduler()
    error = ConnectionError("reset")
    xs = scheduler.create_hot_observable(on_next(210, R1), on_error(220, error))
    results = scheduler.start(lambda: xs.pipe(until_end()))
    assert results.messages == [on_next(210, R1), on_error(220, error)]
    assert xs.subscriptions == [subscribe(200, 220)]

    scheduler = TestScheduler()
    ys = scheduler.create_hot_observable(on_next(210, R1), on_completed(260))
    results = scheduler.start(lambda: ys.pipe(until_end()))
    assert results.messages == [on_next(210, R1), on_completed(260)]
    assert ys.subscriptions == [subscribe(200, 260)]


def test_until_end_disposal() -> None:
    scheduler = TestScheduler()
    xs = hot(scheduler)
    results = scheduler.start(lambda: xs.pipe(until_end()), disposed=215)
    assert results.messages == [on_next(210, R1)]
    assert xs.subscriptions == [subscribe(200, 215)]


def test_until_end_on_a_synchronous_source() -> None:
    # The end arrives during subscribe, before the subscription is assigned: still disposed.
    disposed: list[bool] = []

    def source(observer: Any, scheduler: Any = None) -> Any:
        observer.on_next(R1)
        observer.on_next(END)
        observer.on_next(R2)
        return reactivex.disposable.Disposable(lambda: disposed.append(True))

    got: list[Any] = []
    done: list[bool] = []
    reactivex.create(source).pipe(until_end()).subscribe(
        got.append, on_completed=lambda: done.append(True)
    )
    assert got == [R1, END] and done == [True] and disposed == [True]


def test_until_end_forwards_the_subscription_scheduler() -> None:
    scheduler = TestScheduler()
    seen: list[Any] = []

    def source(observer: Any, sched: Any = None) -> Any:
        seen.append(sched)
        return reactivex.disposable.Disposable()

    reactivex.create(source).pipe(until_end()).subscribe(scheduler=scheduler)
    assert seen == [scheduler]


# --- on drawn sessions (rxlens.testing.strategies) ---------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens_streams(), st.booleans())
def test_until_end_delivers_a_drawn_session_up_to_its_end(
    stream: TimedStream, inclusive: bool
) -> None:
    emitted = rxlens.testing.run(lambda events: events.pipe(until_end(inclusive)), stream)
    if stream.ended:
        # The end is the stream's last frame: everything before it, the end if inclusive.
        assert emitted == (stream if inclusive else stream[:-1])
    else:
        assert emitted == stream
    assert emitted.completed_at == stream[-1][0]
