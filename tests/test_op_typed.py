"""typed: virtual-time tests, each malformed policy, and the arrival stamp."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
import reactivex
from reactivex.notification import OnError, OnNext
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.errors import MalformedEventError
from rxlens.events import Heartbeat, InferenceResult, MalformedEvent
from rxlens.operators._typed import typed
from rxlens.sse import Event

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)
subscribe = ReactiveTest.subscribe

GOOD = Event(json.dumps({"type": "inference.result", "event_data": {"response": ["hi"]}}), id="1")
BEAT = Event(json.dumps({"type": "sse.stream.heartbeat", "event_data": {"session_id": "s"}}))
BAD = Event("not json", id="2")


def _value(recorded: Any) -> Any:
    notification = recorded.value
    assert isinstance(notification, OnNext)
    return notification.value


def _error(recorded: Any) -> Exception:
    notification = recorded.value
    assert isinstance(notification, OnError)
    return notification.exception


def frames(scheduler: TestScheduler) -> Any:
    return scheduler.create_hot_observable(
        on_next(210, GOOD), on_next(220, BAD), on_next(230, BEAT), on_completed(240)
    )


def test_emit_policy_types_every_frame_and_stamps_virtual_time() -> None:
    scheduler = TestScheduler()
    xs = frames(scheduler)
    results = scheduler.start(lambda: xs.pipe(typed()))
    times = [m.time for m in results.messages]
    values = [_value(m) for m in results.messages[:3]]
    assert times == [210, 220, 230, 240]
    assert isinstance(values[0], InferenceResult) and values[0].id == "1"
    assert isinstance(values[1], MalformedEvent) and values[1].raw == "not json"
    assert isinstance(values[2], Heartbeat)
    assert [v.received_at for v in values] == [210.0, 220.0, 230.0]
    assert results.messages[3] == on_completed(240)
    assert xs.subscriptions == [subscribe(200, 240)]


def test_skip_policy_drops_bad_frames_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = TestScheduler()
    xs = frames(scheduler)
    with caplog.at_level(logging.WARNING, logger="rxlens.events"):
        results = scheduler.start(lambda: xs.pipe(typed(on_malformed="skip")))
    assert [m.time for m in results.messages] == [210, 230, 240]
    assert "not json" in caplog.text


def test_raise_policy_fails_and_disposes_the_source() -> None:
    scheduler = TestScheduler()
    xs = frames(scheduler)
    results = scheduler.start(lambda: xs.pipe(typed(on_malformed="raise")))
    assert [m.time for m in results.messages] == [210, 220]
    error = _error(results.messages[1])
    assert isinstance(error, MalformedEventError) and error.raw == "not json"
    assert xs.subscriptions == [subscribe(200, 220)]


def test_a_number_too_large_for_a_float_is_malformed_and_the_stream_goes_on() -> None:
    huge = Event(
        json.dumps({"type": "sse.stream.heartbeat", "event_data": {"message_timeout": 10**400}})
    )
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, huge), on_next(220, GOOD), on_completed(230))
    results = scheduler.start(lambda: xs.pipe(typed()))
    assert [m.time for m in results.messages] == [210, 220, 230]
    bad = _value(results.messages[0])
    assert isinstance(bad, MalformedEvent) and bad.raw == huge.data
    assert isinstance(_value(results.messages[1]), InferenceResult)
    assert xs.subscriptions == [subscribe(200, 230)]


def test_upstream_errors_pass() -> None:
    scheduler = TestScheduler()
    boom = ConnectionError("reset")
    xs = scheduler.create_hot_observable(on_error(215, boom))
    results = scheduler.start(lambda: xs.pipe(typed()))
    assert results.messages == [on_error(215, boom)]


def test_disposal_reaches_the_source() -> None:
    scheduler = TestScheduler()
    xs = frames(scheduler)
    results = scheduler.start(lambda: xs.pipe(typed()), disposed=215)
    assert len(results.messages) == 1
    assert xs.subscriptions == [subscribe(200, 215)]


def test_without_a_scheduler_the_stamp_is_the_wall_clock() -> None:
    got: list[Any] = []
    before = time.time()
    reactivex.from_iterable([GOOD]).pipe(typed()).subscribe(got.append)
    assert len(got) == 1 and before <= got[0].received_at <= time.time()


def test_subscription_scheduler_is_forwarded() -> None:
    scheduler = TestScheduler()
    seen: list[Any] = []

    def source(observer: Any, sched: Any = None) -> Any:
        seen.append(sched)
        return reactivex.disposable.Disposable()

    reactivex.create(source).pipe(typed()).subscribe(scheduler=scheduler)
    assert seen == [scheduler]


def test_bad_policy_is_rejected_at_once() -> None:
    with pytest.raises(ValueError, match="on_malformed"):
        typed(on_malformed="ignore")  # type: ignore[arg-type]
