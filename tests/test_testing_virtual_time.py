"""rxlens.testing cold/hot/run: timed events on a TestScheduler, exact virtual times."""

from __future__ import annotations

import doctest
from typing import Any

import pytest
import reactivex
from hypothesis import HealthCheck, given, settings
from reactivex import Observable
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler

import rxlens.testing
import rxlens.testing._laws
import rxlens.testing._virtual_time
import rxlens.testing.strategies
from rxlens.events import INFERENCE_RESULT, InferenceResult, LensEvent
from rxlens.operators import only_results, window_results
from rxlens.testing import HOT_START, TimedStream, cold, hot, run
from rxlens.testing.strategies import lens_streams

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed

A, B, C = (InferenceResult([label]) for label in ("A", "B", "C"))
TIMED = [(0.5, A), (2.0, B), (2.0, C)]


def test_cold_replays_for_each_subscriber_from_its_subscription() -> None:
    scheduler = TestScheduler()
    source = cold(TIMED, scheduler)
    first = scheduler.create_observer()
    second = scheduler.create_observer()
    scheduler.schedule_absolute(10.0, lambda *_: source.subscribe(first))
    scheduler.schedule_absolute(20.0, lambda *_: source.subscribe(second))
    scheduler.start()
    assert first.messages == [
        on_next(10.5, A),
        on_next(12.0, B),
        on_next(12.0, C),
        on_completed(12.0),
    ]
    assert second.messages == [
        on_next(20.5, A),
        on_next(22.0, B),
        on_next(22.0, C),
        on_completed(22.0),
    ]


def test_cold_without_completion_and_empty() -> None:
    scheduler = TestScheduler()
    observer = scheduler.start(lambda: cold(TIMED, scheduler, complete=False))
    assert observer.messages == [on_next(200.5, A), on_next(202.0, B), on_next(202.0, C)]
    scheduler = TestScheduler()
    assert scheduler.start(lambda: cold([], scheduler)).messages == [on_completed(200.0)]


def test_hot_emits_at_absolute_times_and_late_subscribers_miss_events() -> None:
    scheduler = TestScheduler()
    source = hot(TIMED, scheduler)
    assert HOT_START == 201.0
    on_time = scheduler.start(lambda: source)
    assert on_time.messages == [
        on_next(201.5, A),
        on_next(203.0, B),
        on_next(203.0, C),
        on_completed(203.0),
    ]
    scheduler = TestScheduler()
    source = hot(TIMED, scheduler, start=100.0)
    late = scheduler.start(lambda: source, created=50, subscribed=101)
    assert late.messages == [on_next(102.0, B), on_next(102.0, C), on_completed(102.0)]


@pytest.mark.parametrize("bad", [[(2.0, A), (1.0, B)], [(-1.0, A)]])
def test_out_of_order_or_negative_times_are_refused(bad: list[tuple[float, Any]]) -> None:
    with pytest.raises(ValueError, match=r"time order|before 0"):
        cold(bad, TestScheduler())
    with pytest.raises(ValueError, match=r"time order|before 0"):
        hot(bad, TestScheduler())
    with pytest.raises(ValueError, match=r"time order|before 0"):
        run(lambda s: s, bad)


def test_run_returns_values_with_their_virtual_times_and_the_completion() -> None:
    emitted = run(lambda s: s.pipe(ops.map(lambda e: e.text)), TIMED)
    assert emitted == [(0.5, "A"), (2.0, "B"), (2.0, "C")]
    assert emitted.values == ["A", "B", "C"]
    assert emitted.completed_at == 2.0 and emitted.error is None


def test_run_gives_time_operators_the_virtual_clock() -> None:
    # window_results(seconds=1) times its windows on the subscription's scheduler.
    emitted = run(lambda s: s.pipe(window_results(seconds=1.0)), TIMED)
    assert emitted == [(1.0, [A]), (2.0, [B, C])]
    assert emitted.completed_at == 2.0
    delayed = run(lambda s: s.pipe(ops.delay(3.0)), [(1.0, A)])
    assert delayed == [(4.0, A)] and delayed.completed_at == 4.0


def test_run_raises_the_pipelines_error_or_keeps_it() -> None:
    def failing(source: Observable[LensEvent]) -> Observable[str]:
        def text(event: LensEvent) -> str:
            if event == B:
                raise KeyError("no B please")
            return "ok"

        return source.pipe(ops.map(text))

    with pytest.raises(KeyError, match="no B please"):
        run(failing, TIMED)
    kept = run(failing, TIMED, errors="keep")
    assert kept == [(0.5, "ok")] and isinstance(kept.error, KeyError)
    assert kept.completed_at is None
    with pytest.raises(ValueError, match="errors must be"):
        run(failing, TIMED, errors="ignore")  # type: ignore[arg-type]


def test_run_stops_a_pipeline_that_never_completes_at_until() -> None:
    ticking = run(lambda s: reactivex.interval(10.0), TIMED, until=35.0)
    assert ticking == [(10.0, 0), (20.0, 1), (30.0, 2)]
    assert ticking.completed_at is None
    # By default an hour of virtual time after the last event.
    assert len(run(lambda s: reactivex.interval(60.0), TIMED)) == 60


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens_streams(drops=False, restarts=False))
def test_a_property_test_is_three_lines(stream: TimedStream) -> None:
    emitted = run(lambda events: events.pipe(only_results()), stream)
    assert emitted.values == [e for e in stream.sent if e.type == INFERENCE_RESULT]
    assert [at for at, _ in emitted] == [at for at, e in stream if e.type == INFERENCE_RESULT]


@pytest.mark.parametrize(
    "module",
    [rxlens.testing._virtual_time, rxlens.testing._laws, rxlens.testing.strategies],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module: Any) -> None:
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted >= 3 and failed == 0


def test_the_package_exports_the_helpers_and_keeps_the_fixtures() -> None:
    for name in rxlens.testing.__all__:
        assert hasattr(rxlens.testing, name), name
    assert {"lens_emulator", "lens_emulator_factory", "run", "cold", "hot"} <= set(
        rxlens.testing.__all__
    )


def test_the_pytest_plugin_entry_point_still_names_rxlens_testing() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("rxlens") == "rxlens.testing"
