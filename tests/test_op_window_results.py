"""window_results: virtual-time marbles, window laws (hypothesis) and a real-thread stress test."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as ops
from reactivex.scheduler import TimeoutScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.operators import window_results

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


def hot(
    scheduler: TestScheduler,
    marbles: list[tuple[int, Any]],
    end: int | None,
    error: Exception | None = None,
) -> Any:
    """A hot source; times are relative to the subscription at 200."""
    messages = [on_next(200 + t, v) for t, v in marbles]
    if end is not None:
        messages.append(on_error(200 + end, error) if error else on_completed(200 + end))
    return scheduler.create_hot_observable(messages)


def relative(messages: list[Any]) -> list[tuple[float, str, Any]]:
    return [(m.time - 200, m.value.kind, getattr(m.value, "value", None)) for m in messages]


ERR = RuntimeError("boom")


def test_tumbling_by_count() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (3, "b"), (5, "c"), (7, "d"), (9, "e")], 11)
    res = s.start(lambda: src.pipe(window_results(count=2)))
    assert relative(res.messages) == [
        (3, "N", ["a", "b"]),
        (7, "N", ["c", "d"]),
        (11, "N", ["e"]),
        (11, "C", None),
    ]
    assert src.subscriptions == [subscribe(200, 211)]


def test_count_window_ending_on_a_boundary_emits_no_empty_list() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (3, "b")], 5)
    res = s.start(lambda: src.pipe(window_results(count=2)))
    assert relative(res.messages) == [(3, "N", ["a", "b"]), (5, "C", None)]


def test_tumbling_by_time_emits_empty_spans_and_the_open_window_on_completion() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (3, "b"), (7, "c"), (12, "d")], 13)
    res = s.start(lambda: src.pipe(window_results(seconds=3, scheduler=s)))
    # b at 3 and d at 12 arrive at the very instant a window closes: they join it.
    assert relative(res.messages) == [
        (3, "N", ["a", "b"]),
        (6, "N", []),
        (9, "N", ["c"]),
        (12, "N", ["d"]),
        (13, "N", []),
        (13, "C", None),
    ]
    assert src.subscriptions == [subscribe(200, 213)]


def test_time_windows_use_the_subscription_scheduler_when_none_is_given() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (4, "b")], 5)
    res = s.start(lambda: src.pipe(window_results(seconds=3)))
    assert relative(res.messages) == [(3, "N", ["a"]), (5, "N", ["b"]), (5, "C", None)]


def test_sliding_by_count() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (3, "b"), (5, "c"), (7, "d")], 9)
    res = s.start(lambda: src.pipe(window_results(count=3, slide=1)))
    assert relative(res.messages) == [
        (5, "N", ["a", "b", "c"]),
        (7, "N", ["b", "c", "d"]),
        (9, "N", ["c", "d"]),
        (9, "N", ["d"]),
        (9, "C", None),
    ]


def test_sliding_by_time() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (3, "b"), (7, "c"), (12, "d")], 13)
    res = s.start(lambda: src.pipe(window_results(seconds=4, slide=2, scheduler=s)))
    assert relative(res.messages) == [
        (4, "N", ["a", "b"]),
        (6, "N", ["b"]),
        (8, "N", ["c"]),
        (10, "N", ["c"]),
        (12, "N", ["d"]),
        (13, "N", ["d"]),
        (13, "N", []),
        (13, "C", None),
    ]


def test_count_or_time_whichever_first() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (2, "b"), (3, "c"), (7, "d")], 13)
    res = s.start(lambda: src.pipe(window_results(count=2, seconds=5, scheduler=s)))
    assert relative(res.messages) == [
        (2, "N", ["a", "b"]),  # count
        (7, "N", ["c", "d"]),  # time: 5 s after the window opened at 2
        (12, "N", []),
        (13, "N", []),
        (13, "C", None),
    ]


@pytest.mark.parametrize(
    "kwargs", [{"count": 2}, {"seconds": 3}, {"count": 3, "seconds": 5}, {"seconds": 4, "slide": 2}]
)
def test_error_drops_the_open_window_and_is_forwarded(kwargs: dict[str, Any]) -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a")], 2, ERR)
    res = s.start(lambda: src.pipe(window_results(**kwargs, scheduler=s)))
    assert relative(res.messages) == [(2, "E", None)]
    assert res.messages[0].value.exception is ERR
    assert src.subscriptions == [subscribe(200, 202)]


def test_disposal_unsubscribes_and_stops_the_timer() -> None:
    s = TestScheduler()
    src = hot(s, [(1, "a"), (5, "b")], None)
    res = s.start(lambda: src.pipe(window_results(seconds=3, scheduler=s)), disposed=207)
    assert relative(res.messages) == [(3, "N", ["a"]), (6, "N", ["b"])]
    assert src.subscriptions == [subscribe(200, 207)]
    s.advance_to(2000)
    assert len(res.messages) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs count"),
        ({"count": 0}, "positive int"),
        ({"count": True}, "positive int"),
        ({"seconds": 0}, "positive"),
        ({"count": 2, "seconds": 1, "slide": 1}, "not with both"),
        ({"count": 3, "slide": 1.5}, "must be an int"),
        ({"count": 3, "slide": 4}, "must not exceed"),
        ({"seconds": 3, "slide": 4}, "must not exceed"),
        ({"seconds": 3, "slide": 0}, "positive"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        window_results(**kwargs)


# --- laws ----------------------------------------------------------------------------------------

# Strictly increasing arrival times (relative to the subscription) and a completion time after
# them; times are whole seconds so that the virtual clock is exact.
timed_items = st.lists(st.integers(1, 60), max_size=30, unique=True).map(sorted)


def run_windows(times: list[int], end: int, **kwargs: Any) -> list[tuple[float, list[int]]]:
    s = TestScheduler()
    src = hot(s, [(t, t) for t in times], end)
    res = s.start(lambda: src.pipe(window_results(**kwargs, scheduler=s)), disposed=10_000)
    assert res.messages[-1].value.kind == "C"
    assert res.messages[-1].time == 200 + end
    return [(m.time - 200, m.value.value) for m in res.messages[:-1]]


@settings(max_examples=60, deadline=None)
@given(
    timed_items, st.integers(1, 20), st.integers(1, 10), st.sampled_from(["count", "time", "both"])
)
def test_tumbling_windows_hold_every_item_once_in_order(
    times: list[int], extra: int, size: int, shape: str
) -> None:
    end = (times[-1] if times else 0) + extra
    kwargs = {
        "count": {"count": size},
        "time": {"seconds": size},
        "both": {"count": size, "seconds": size + 1},
    }
    windows = run_windows(times, end, **kwargs[shape])
    assert [item for _, window in windows for item in window] == times
    assert all(len(window) <= size for _, window in windows if shape != "time")


@settings(max_examples=60, deadline=None)
@given(timed_items, st.integers(1, 20), st.integers(1, 8), st.integers(1, 8))
def test_each_sliding_time_window_holds_exactly_its_span(
    times: list[int], extra: int, seconds: int, slide: int
) -> None:
    slide = min(slide, seconds)
    end = (times[-1] if times else 0) + extra
    expected = []
    opened = 0
    while opened < end:  # a window due to open at the completion instant never opens
        closed = min(opened + seconds, end)
        expected.append((closed, opened, [t for t in times if opened < t <= closed]))
        opened += slide
    expected.sort(key=lambda w: (w[0], w[1]))
    assert run_windows(times, end, seconds=seconds, slide=slide) == [(c, w) for c, _, w in expected]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(), max_size=30), st.integers(1, 6), st.integers(1, 6))
def test_each_sliding_count_window_holds_exactly_its_span(
    items: list[int], count: int, slide: int
) -> None:
    slide = min(slide, count)
    windows = (
        reactivex.from_iterable(items)
        .pipe(window_results(count=count, slide=slide), ops.to_list())
        .run()
    )
    starts = range(0, len(items), slide)
    assert windows == [items[i : i + count] for i in starts]


# --- real threads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{"seconds": 0.005}, {"count": 7, "seconds": 0.003}, {"count": 5}]
)
def test_stress_real_thread_and_real_timer_lose_nothing(kwargs: dict[str, Any]) -> None:
    total = 20_000
    subject: Subject[int] = Subject()
    received: list[int] = []
    windows = 0
    overlaps = 0
    emitting = threading.Lock()
    done = threading.Event()

    def take(window: list[int]) -> None:
        nonlocal windows, overlaps
        if not emitting.acquire(blocking=False):
            overlaps += 1
            return
        try:
            windows += 1
            received.extend(window)
        finally:
            emitting.release()

    sub = subject.pipe(window_results(**kwargs, scheduler=TimeoutScheduler.singleton())).subscribe(
        take, lambda e: done.set(), done.set
    )

    def produce() -> None:
        for i in range(total):
            subject.on_next(i)
            if i % 1000 == 0:
                time.sleep(0.002)  # let timers fire mid-stream
        subject.on_completed()

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(timeout=30)
    assert done.wait(timeout=30)
    sub.dispose()
    assert overlaps == 0
    assert len(received) == total
    assert received == list(range(total))
    assert windows >= 1
