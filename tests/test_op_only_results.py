"""only_results: virtual-time tests."""

from __future__ import annotations

from typing import Any

import reactivex
from hypothesis import HealthCheck, given, settings
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler

import rxlens.testing
from rxlens.events import (
    Heartbeat,
    InferenceResult,
    LogEvent,
    MalformedEvent,
    StreamEnd,
    StreamStart,
    UnknownEvent,
)
from rxlens.operators import only_results
from rxlens.testing import TimedStream
from rxlens.testing.strategies import LENSES, lens_streams

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)
subscribe = ReactiveTest.subscribe

R1 = InferenceResult(["one"])
R2 = InferenceResult(["HEALTHY", {"HEALTHY": 1}])


def test_only_results_passes_results_at_their_times() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, StreamStart("lsn-1", "r")),
        on_next(220, Heartbeat("lsn-1")),
        on_next(230, R1),
        on_next(240, LogEvent("log.info", "x")),
        on_next(250, UnknownEvent("frame.processed", {})),
        on_next(260, MalformedEvent("oops", {"_json": ["bad"]})),
        on_next(270, R2),
        on_next(280, StreamEnd()),
        on_completed(300),
    )
    results = scheduler.start(lambda: xs.pipe(only_results()))
    assert results.messages == [on_next(230, R1), on_next(270, R2), on_completed(300)]
    assert xs.subscriptions == [subscribe(200, 300)]


def test_only_results_forwards_errors() -> None:
    scheduler = TestScheduler()
    error = RuntimeError("boom")
    xs = scheduler.create_hot_observable(on_next(210, R1), on_error(220, error))
    results = scheduler.start(lambda: xs.pipe(only_results()))
    assert results.messages == [on_next(210, R1), on_error(220, error)]
    assert xs.subscriptions == [subscribe(200, 220)]


def test_only_results_disposal_reaches_the_source() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, R1), on_next(500, R2))
    results = scheduler.start(lambda: xs.pipe(only_results()), disposed=400)
    assert results.messages == [on_next(210, R1)]
    assert xs.subscriptions == [subscribe(200, 400)]


def test_only_results_forwards_the_subscription_scheduler() -> None:
    scheduler = TestScheduler()
    seen: list[Any] = []

    def source(observer: Any, sched: Any = None) -> Any:
        seen.append(sched)
        observer.on_completed()
        return reactivex.disposable.Disposable()

    reactivex.create(source).pipe(only_results(), ops.to_list()).subscribe(scheduler=scheduler)
    assert seen == [scheduler]


def test_each_subscription_is_independent() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, R1), on_completed(20))
    op = only_results()
    first = scheduler.start(lambda: xs.pipe(op))
    assert first.messages == [on_next(210, R1), on_completed(220)]
    again: list[Any] = []
    xs.pipe(op).subscribe(again.append, scheduler=scheduler)
    scheduler.advance_by(20)
    assert again == [R1]


# --- on drawn sessions (rxlens.testing.strategies) ---------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens_streams(lenses=LENSES, malformed=True))
def test_only_results_keeps_exactly_the_results_of_any_session_at_their_times(
    stream: TimedStream,
) -> None:
    emitted = rxlens.testing.run(lambda events: events.pipe(only_results()), stream)
    assert emitted == [(at, e) for at, e in stream if isinstance(e, InferenceResult)]
    assert emitted.completed_at == stream[-1][0]
