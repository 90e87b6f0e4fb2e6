"""RetryPolicy (pure) and the resume operator, in virtual time."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import Observable
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.errors import (
    AuthenticationError,
    HTTPStatusError,
    LocalError,
    RetriesExhausted,
    StreamClosed,
    TransportError,
    mark_downstream,
)
from rxlens.operators import resume
from rxlens.retry import RetryPolicy, RetryState, is_retryable
from rxlens.sse import ConnectionState

on_next = ReactiveTest.on_next
on_error = ReactiveTest.on_error
on_completed = ReactiveTest.on_completed
subscribe = ReactiveTest.subscribe

DROP = TransportError("connection reset")


def delays(policy: RetryPolicy, n: int, error: Exception = DROP, **kw: Any) -> list[float]:
    state = RetryState()
    out = []
    for i in range(n):
        decision = policy.decide(error, state, now=float(i), **kw)
        assert decision.retry
        out.append(decision.delay)
        state = decision.state
    return out


# --- RetryPolicy ------------------------------------------------------------------------------


def test_documented_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.base, policy.multiplier, policy.cap, policy.jitter, policy.reset_after) == (
        1.0,
        2.0,
        30.0,
        0.5,
        60.0,
    )
    assert policy.max_attempts is None and policy.max_elapsed is None
    assert RetryPolicy.default() == policy


def test_exponential_delays_capped() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert delays(policy, 7) == [1, 2, 4, 8, 16, 30, 30]


def test_jitter_bounds_example() -> None:
    policy = RetryPolicy(seed=7)
    for attempt, delay in enumerate(delays(policy, 8), start=1):
        low, high = policy.bounds(attempt)
        assert low <= delay <= high


@settings(max_examples=300)
@given(
    base=st.floats(0, 10),
    multiplier=st.floats(1, 4),
    cap=st.floats(0, 100),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    attempts=st.integers(1, 40),
)
def test_delays_stay_inside_their_bounds(
    base: float, multiplier: float, cap: float, jitter: float, seed: int, attempts: int
) -> None:
    policy = RetryPolicy(base=base, multiplier=multiplier, cap=cap, jitter=jitter, seed=seed)
    for attempt, delay in enumerate(delays(policy, attempts), start=1):
        low, high = policy.bounds(attempt)
        assert 0 <= low <= delay + 1e-9
        assert delay <= high + 1e-9 <= cap + 2e-9


def test_seeded_jitter_is_deterministic() -> None:
    assert delays(RetryPolicy(seed=3), 6) == delays(RetryPolicy(seed=3), 6)
    assert delays(RetryPolicy(seed=3), 6) != delays(RetryPolicy(seed=4), 6)


def test_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=2, jitter=0)
    state = RetryState()
    results = []
    for _ in range(3):
        decision = policy.decide(DROP, state, now=0.0)
        results.append(decision.retry)
        state = decision.state
    assert results == [True, True, False]


def test_max_elapsed() -> None:
    policy = RetryPolicy(max_elapsed=10, jitter=0)
    first = policy.decide(DROP, RetryState(), now=100.0)
    assert first.retry and first.state.started_at == 100.0
    assert policy.decide(DROP, first.state, now=110.0).retry
    assert not policy.decide(DROP, first.state, now=110.5).retry


def test_reset_after_healthy_period() -> None:
    policy = RetryPolicy(jitter=0)
    state = RetryState()
    for _ in range(4):
        state = policy.decide(DROP, state, now=0.0).state
    assert state.attempt == 4
    short = policy.decide(DROP, state, now=0.0, healthy_for=59.9)
    assert short.delay == 16
    reset = policy.decide(DROP, state, now=0.0, healthy_for=60.0)
    assert reset.delay == 1 and reset.state.attempt == 1


def test_retry_field_replaces_base() -> None:
    policy = RetryPolicy(jitter=0)
    assert delays(policy, 3, retry_ms=250) == [0.25, 0.5, 1.0]


def test_retry_after_is_a_floor_clamped_to_cap() -> None:
    policy = RetryPolicy(jitter=0, cap=30)
    assert policy.decide(DROP, RetryState(), now=0.0, retry_after=7).delay == 7
    assert policy.decide(DROP, RetryState(), now=0.0, retry_after=0.1).delay == 1
    assert policy.decide(DROP, RetryState(), now=0.0, retry_after=3600).delay == 30


def test_retry_after_taken_from_the_error() -> None:
    error = HTTPStatusError(429, "http://x", "slow", retry_after=5)
    assert RetryPolicy(jitter=0).decide(error, RetryState(), now=0.0).delay == 5


def test_non_retryable_errors() -> None:
    policy = RetryPolicy()
    assert not policy.decide(ValueError("x"), RetryState(), now=0.0).retry
    assert not policy.decide(AuthenticationError(401, "u"), RetryState(), now=0.0).retry
    assert not policy.decide(HTTPStatusError(400, "u"), RetryState(), now=0.0).retry
    for code in (408, 429, 500, 502, 503, 504):
        assert policy.decide(HTTPStatusError(code, "u"), RetryState(), now=0.0).retry


def test_downstream_errors_are_never_retryable() -> None:
    error = TransportError("raised by the user's on_next")
    error._rxlens_downstream = True  # type: ignore[attr-defined]
    assert not is_retryable(error)


def test_custom_predicate() -> None:
    policy = RetryPolicy(retryable=lambda e: isinstance(e, KeyError))
    assert policy.decide(KeyError("k"), RetryState(), now=0.0).retry
    assert not policy.decide(DROP, RetryState(), now=0.0).retry


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1}, {"multiplier": 0.5}, {"jitter": 1.5}, {"max_attempts": -1}, {"max_elapsed": -1}],
)
def test_invalid_policies(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_policy_is_immutable() -> None:
    with pytest.raises(AttributeError):
        RetryPolicy().base = 5  # type: ignore[misc]


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert RetryPolicy(jitter=0).backoff(100_000) == 30


# --- resume in virtual time -------------------------------------------------------------------


class Item(NamedTuple):
    id: str | None
    value: str


def test_resubscribes_after_the_policy_delay() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, "a"), on_error(20, DROP))
    result = scheduler.start(
        lambda: xs.pipe(resume(RetryPolicy(base=5, jitter=0))), disposed=280
    )
    assert result.messages == [on_next(210, "a"), on_next(235, "a"), on_next(265, "a")]
    assert xs.subscriptions == [
        subscribe(200, 220),
        subscribe(225, 245),
        subscribe(255, 275),
    ]


def test_completion_passes_through() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, "a"), on_completed(20))
    result = scheduler.start(lambda: xs.pipe(resume()))
    assert result.messages == [on_next(210, "a"), on_completed(220)]
    assert xs.subscriptions == [subscribe(200, 220)]


def test_non_retryable_error_passes_at_once_unchanged() -> None:
    scheduler = TestScheduler()
    error = AuthenticationError(401, "http://x")
    xs = scheduler.create_cold_observable(on_next(10, "a"), on_error(20, error))
    result = scheduler.start(lambda: xs.pipe(resume()))
    assert result.messages == [on_next(210, "a"), on_error(220, error)]
    assert xs.subscriptions == [subscribe(200, 220)]


def test_gives_up_with_retries_exhausted() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, DROP))
    policy = RetryPolicy(base=1, jitter=0, max_attempts=2)
    result = scheduler.start(lambda: xs.pipe(resume(policy)))
    # attempts at 200, 211 (+1), 223 (+2); the third failure at 233 gives up.
    assert len(result.messages) == 1
    message = result.messages[0]
    assert message.time == 233
    error = message.value.exception
    assert isinstance(error, RetriesExhausted)
    assert error.last_error is DROP and error.__cause__ is DROP
    assert error.attempts == 2
    assert xs.subscriptions == [subscribe(200, 210), subscribe(211, 221), subscribe(223, 233)]


def test_replayed_ids_are_dropped() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, Item("1", "a")),
        on_next(20, Item("2", "b")),
        on_next(25, Item(None, "no id")),
        on_error(30, DROP),
    )
    result = scheduler.start(
        lambda: xs.pipe(resume(RetryPolicy(base=1, jitter=0, max_attempts=1))),
        disposed=1000,
    )
    values = [m.value.value for m in result.messages if m.value.kind == "N"]
    # The second subscription replays 1 and 2: dropped. Items without an id always pass.
    assert values == [Item("1", "a"), Item("2", "b"), Item(None, "no id"), Item(None, "no id")]


@pytest.mark.parametrize(
    ("remember", "expected"),
    [
        (3, ["1", "2", "3"]),  # the whole replay is recognised
        # Only the last two ids are kept: "1" was forgotten, passes again and evicts "2", ...
        (2, ["1", "2", "3", "1", "2", "3"]),
        (0, ["1", "2", "3", "1", "2", "3"]),  # no memory: no de-duplication
    ],
)
def test_remember_bounds_the_id_memory(remember: int, expected: list[str]) -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, Item("1", "a")),
        on_next(11, Item("2", "b")),
        on_next(12, Item("3", "c")),
        on_error(30, DROP),
    )
    policy = RetryPolicy(base=1, jitter=0, max_attempts=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = scheduler.start(
            lambda: xs.pipe(resume(policy, remember=remember)),
            disposed=1000,
        )
    ids = [m.value.value.id for m in result.messages if m.value.kind == "N"]
    assert ids == expected
    # A forgotten replay passes again, and the ids going back (3, then 1) are said, not silent.
    went_back = [w for w in caught if "went back" in str(w.message)]
    assert len(went_back) == (0 if len(expected) == 3 else 1)


def test_dispose_during_backoff_cancels_the_reconnect() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, DROP))
    result = scheduler.start(lambda: xs.pipe(resume(RetryPolicy(base=50, jitter=0))), disposed=230)
    assert result.messages == []
    assert xs.subscriptions == [subscribe(200, 210)]


def test_each_subscription_gets_a_fresh_budget() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, DROP))
    pipeline = xs.pipe(resume(RetryPolicy(base=1, jitter=0, max_attempts=1)))
    first: list[Any] = []
    second: list[Any] = []
    pipeline.subscribe(on_error=first.append, scheduler=scheduler)
    scheduler.advance_to(100)
    pipeline.subscribe(on_error=second.append, scheduler=scheduler)
    scheduler.advance_to(200)
    assert len(first) == 1 and len(second) == 1
    assert len(xs.subscriptions) == 4  # two attempts for each subscription


def test_healthy_connection_resets_backoff() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(1, "a"), on_next(80, "b"), on_error(90, DROP))
    states: list[ConnectionState] = []
    scheduler.start(
        lambda: xs.pipe(
            resume(RetryPolicy(base=1, jitter=0, reset_after=60), on_state=states.append)
        ),
        disposed=500,
    )
    assert [s.delay for s in states if s.kind == "backing_off"][:3] == [1, 1, 1]


def test_state_reports_backing_off_and_failed() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, DROP))
    states: list[ConnectionState] = []
    scheduler.start(
        lambda: xs.pipe(
            resume(RetryPolicy(base=2, jitter=0, max_attempts=1), on_state=states.append)
        )
    )
    assert [(s.kind, s.attempt, s.delay) for s in states] == [
        ("backing_off", 1, 2),
        ("failed", 2, None),
    ]
    assert states[0].error is DROP


def test_errors_after_items_are_seen_in_order() -> None:
    scheduler = TestScheduler()
    closed = StreamClosed("closed")
    xs = scheduler.create_cold_observable(on_next(5, "a"), on_error(6, closed))
    result = scheduler.start(
        lambda: xs.pipe(resume(RetryPolicy.never())),
    )
    assert result.messages[0] == on_next(205, "a")
    assert isinstance(result.messages[1].value.exception, RetriesExhausted)


def test_exception_in_downstream_on_next_is_not_retried() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, "a"), on_next(20, "b"))
    errors: list[Exception] = []
    seen: list[str] = []

    def user_on_next(value: str) -> None:
        seen.append(value)
        raise TransportError("looks like a network error but is the user's")

    xs.pipe(resume(RetryPolicy.immediate())).subscribe(
        user_on_next, errors.append, scheduler=scheduler
    )
    scheduler.advance_to(100)
    assert seen == ["a"]
    assert len(errors) == 1 and isinstance(errors[0], TransportError)
    assert len(xs.subscriptions) == 1


def test_works_after_other_operators() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, 1), on_error(20, DROP))
    result = scheduler.start(
        lambda: xs.pipe(ops.map(lambda v: v * 10), resume(RetryPolicy(base=1, jitter=0))),
        disposed=240,
    )
    assert result.messages == [on_next(210, 10), on_next(231, 10)]


def test_remember_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        resume(remember=-1)


# --- the server's retry: is a floor; jitter only adds to it -----------------------------------


@settings(max_examples=300)
@given(
    retry_ms=st.integers(0, 120_000),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    attempts=st.integers(1, 8),
)
def test_a_retry_field_is_a_floor_of_every_delay(
    retry_ms: int, jitter: float, seed: int, attempts: int
) -> None:
    policy = RetryPolicy(jitter=jitter, seed=seed)
    for attempt, delay in enumerate(delays(policy, attempts, retry_ms=retry_ms), start=1):
        low, high = policy.bounds(attempt, retry_ms / 1000)
        assert min(retry_ms / 1000, policy.cap) <= low <= delay <= high <= policy.cap


def test_the_issue_example_never_reconnects_sooner_than_retry() -> None:
    # With the default jitter a retry: 2000 gave 1.489 s.
    got = [
        RetryPolicy(seed=seed).decide(DROP, RetryState(), now=0.0, retry_ms=2000).delay
        for seed in range(200)
    ]
    assert min(got) >= 2.0 and max(got) <= 3.0 and len(set(got)) > 1


@pytest.mark.parametrize("digits", [20, 400, 5000])
def test_a_huge_retry_never_overflows(digits: int) -> None:
    retry_ms = 10**digits
    decision = RetryPolicy(cap=7).decide(DROP, RetryState(), now=0.0, retry_ms=retry_ms)
    assert decision.retry and decision.delay == 7


# --- a clean end of stream after events is not a failure --------------------------------------


def clean_end() -> StreamClosed:
    closed = StreamClosed("the server closed the stream at an event boundary")
    closed.clean = True
    return closed


def test_clean_ends_after_events_never_grow_the_delay() -> None:
    policy = RetryPolicy(jitter=0, max_attempts=2)
    state = RetryState()
    got = []
    for i in range(6):
        decision = policy.decide(clean_end(), state, now=float(i), delivered=True, retry_ms=500)
        assert decision.retry
        got.append(decision.delay)
        state = decision.state
    assert got == [0.5] * 6 and state.attempt == 1


@pytest.mark.parametrize(
    ("error", "delivered"),
    [(clean_end(), False), (StreamClosed("mid-event"), True), (DROP, True)],
)
def test_other_ends_grow_the_delay(error: Exception, delivered: bool) -> None:
    policy = RetryPolicy(jitter=0)
    state = RetryState()
    got = []
    for i in range(3):
        decision = policy.decide(error, state, now=float(i), delivered=delivered, retry_ms=500)
        got.append(decision.delay)
        state = decision.state
    assert got == [0.5, 1.0, 2.0]


def test_resume_reconnects_after_clean_ends_at_the_first_delay() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, "a"), on_error(20, clean_end()))
    states: list[ConnectionState] = []
    scheduler.start(
        lambda: xs.pipe(resume(RetryPolicy(base=2, jitter=0), on_state=states.append)),
        disposed=400,
    )
    assert [s.delay for s in states if s.kind == "backing_off"][:6] == [2] * 6


# --- the rest of the policy's rules -----------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"cap": -1}, {"jitter": -0.1}, {"base": -0.001}])
def test_negative_bounds_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_zero_bounds_are_allowed() -> None:
    policy = RetryPolicy(base=0, cap=0, jitter=0, max_attempts=0, max_elapsed=0)
    assert (policy.base, policy.cap, policy.jitter, policy.max_elapsed) == (0, 0, 0, 0)


def test_max_elapsed_zero_allows_the_first_retry_only_at_once() -> None:
    policy = RetryPolicy(max_elapsed=0, jitter=0)
    first = policy.decide(DROP, RetryState(), now=5.0)
    assert first.retry
    assert policy.decide(DROP, first.state, now=5.0).retry
    assert not policy.decide(DROP, first.state, now=5.001).retry


def test_retry_state_is_immutable() -> None:
    with pytest.raises(AttributeError):
        RetryState().attempt = 3  # type: ignore[misc]


def test_immediate_never_waits() -> None:
    policy = RetryPolicy.immediate(max_attempts=20)
    assert delays(policy, 20) == [0.0] * 20
    assert delays(policy, 5, retry_ms=5000) == [0.0] * 5  # the cap of 0 wins
    assert policy.max_attempts == 20 and RetryPolicy.immediate().max_attempts is None


def test_seeded_jitter_varies_between_attempts() -> None:
    policy = RetryPolicy(multiplier=1, cap=100, seed=11)
    got = delays(policy, 6)
    assert len(set(got)) == 6 and all(0.5 <= d <= 1 for d in got)


def test_never_gives_up_at_once() -> None:
    decision = RetryPolicy.never().decide(DROP, RetryState(), now=0.0)
    assert not decision.retry and decision.state.attempt == 1


# --- resume: the first-attempt time, the subscriber's own errors, the budget --------------------


def test_one_healthy_connection_does_not_stop_the_backoff_growing() -> None:
    # The first connection is healthy for 89 s; every later one fails before delivering.
    scheduler = TestScheduler()
    calls = iter(range(100))

    def factory(observer: Any, _scheduler: Any = None) -> Any:
        if next(calls) == 0:
            scheduler.schedule_relative(1, lambda *_: observer.on_next("a"))
            return scheduler.schedule_relative(90, lambda *_: observer.on_error(DROP))
        return scheduler.schedule_relative(1, lambda *_: observer.on_error(DROP))

    states: list[ConnectionState] = []
    policy = RetryPolicy(base=1, jitter=0, reset_after=60)
    source: Any = Observable(factory)
    scheduler.start(lambda: source.pipe(resume(policy, on_state=states.append)), disposed=400)
    assert [s.delay for s in states if s.kind == "backing_off"][:5] == [1, 2, 4, 8, 16]


def test_a_connection_that_delivered_nothing_was_never_healthy() -> None:
    # However short reset_after is, a connection that failed before its first item does not
    # reset the back-off.
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(5, DROP))
    states: list[ConnectionState] = []
    policy = RetryPolicy(base=1, jitter=0, reset_after=1)
    scheduler.start(lambda: xs.pipe(resume(policy, on_state=states.append)), disposed=300)
    assert [s.delay for s in states if s.kind == "backing_off"][:4] == [1, 2, 4, 8]


def test_an_error_marked_as_the_subscribers_own_passes_at_once() -> None:
    scheduler = TestScheduler()
    own = mark_downstream(TransportError("raised by the subscriber's code"))
    xs = scheduler.create_cold_observable(on_next(10, "a"), on_error(20, own))
    states: list[ConnectionState] = []
    result = scheduler.start(
        lambda: xs.pipe(resume(RetryPolicy.immediate(), on_state=states.append))
    )
    assert result.messages == [on_next(210, "a"), on_error(220, own)]
    assert xs.subscriptions == [subscribe(200, 220)]
    assert states == []  # not a connection failure: no failed state


def test_retries_exhausted_says_how_long_it_tried() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_error(10, DROP))
    policy = RetryPolicy(base=5, jitter=0, max_attempts=2)
    result = scheduler.start(lambda: xs.pipe(resume(policy)))
    error = result.messages[0].value.exception
    assert isinstance(error, RetriesExhausted)
    # First failure at t=210; retries at 215 (fails 225) and 235 (fails 245).
    assert error.elapsed == 35 and error.attempts == 2


def test_a_failing_retry_predicate_ends_the_subscription() -> None:
    scheduler = TestScheduler()
    bug = RuntimeError("a bug in the predicate")

    def retryable(_error: BaseException) -> bool:
        raise bug

    xs = scheduler.create_cold_observable(on_error(10, DROP))
    result = scheduler.start(lambda: xs.pipe(resume(RetryPolicy(retryable=retryable))))
    assert len(result.messages) == 1 and result.messages[0].time == 210
    error = result.messages[0].value.exception
    assert isinstance(error, LocalError) and error.__cause__ is bug


def test_a_failing_resubscription_on_the_timer_ends_the_subscription() -> None:
    # A source whose subscribe raises fails its subscription (RxPY passes the exception to
    # on_error); resume passes it on at once, on the timer's thread, and never hangs.
    scheduler = TestScheduler()
    bug = RuntimeError("cannot subscribe")
    calls = iter(range(100))

    def factory(observer: Any, _scheduler: Any = None) -> Any:
        if next(calls) > 0:
            raise bug
        return scheduler.schedule_relative(10, lambda *_: observer.on_error(DROP))

    source: Any = Observable(factory)
    result = scheduler.start(lambda: source.pipe(resume(RetryPolicy(base=1, jitter=0))))
    assert len(result.messages) == 1 and result.messages[0].time == 211
    assert result.messages[0].value.exception is bug


def test_bounds_with_a_retry_hint_are_the_hint_and_the_added_jitter() -> None:
    assert RetryPolicy(jitter=0.5).bounds(1, 2.0) == (2.0, 3.0)
    assert RetryPolicy(jitter=0.5, cap=2.5).bounds(1, 2.0) == (2.0, 2.5)


def test_giving_up_waits_nothing() -> None:
    never = RetryPolicy.never().decide(DROP, RetryState(), now=0.0)
    refused = RetryPolicy().decide(AuthenticationError(401, "u"), RetryState(), now=0.0)
    late = RetryPolicy(max_elapsed=1).decide(DROP, RetryState(1, 0.0, 1), now=5.0)
    assert [d.delay for d in (never, refused, late)] == [0.0, 0.0, 0.0]
    assert not (never.retry or refused.retry or late.retry)


def test_the_predicate_is_not_in_the_repr() -> None:
    assert "retryable" not in repr(RetryPolicy())
