"""The laws rxlens holds itself to, as assertions a user can call in their own tests.

Our suite checks that resumes deliver every event exactly once, that event-time answers do not
depend on replay speed, and that tumbling windows lose nothing. A user's own pipeline (a vote,
an alert, a join of sessions) should obey the same laws, and a bare ``assert a == b`` on two
long lists of events says little about *which* event went wrong. These helpers say it:

    >>> assert_exactly_once(delivered=["a", "b", "c"], sent=["a", "b", "c"])
    >>> assert_exactly_once(delivered=["a", "b", "b", "c"], sent=["a", "b", "c"])
    Traceback (most recent call last):
    ...
    AssertionError: not exactly once: 1 delivered more often than sent (first: 'b', 2 times, sent 1)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from reactivex import Observable

from rxlens.events import LensEvent
from rxlens.testing._virtual_time import run

__all__ = ["assert_exactly_once", "assert_no_loss", "assert_same_at_any_speed"]

_T = TypeVar("_T")

#: Replay speeds :func:`assert_same_at_any_speed` tries by default.
SPEEDS = (0.25, 1.0, 4.0, 100.0)


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _counter(items: Sequence[Any]) -> Callable[[Any], int]:
    """How many of ``items`` equal a value: hashed when every item hashes, else by ``==``."""
    try:
        counts = Counter(items)
    except TypeError:  # lists, dicts: compare one by one
        return lambda value: sum(1 for item in items if item == value)
    return lambda value: counts[value] if _hashable(value) else 0


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _occurrences(items: Sequence[Any]) -> list[int]:
    """For each item, how many equal items come before it, plus one (1 for a first one)."""
    out: list[int] = []
    try:
        running: Counter[Any] = Counter()
        for item in items:
            running[item] += 1
            out.append(running[item])
    except TypeError:
        out = [1 + sum(1 for old in items[:i] if old == item) for i, item in enumerate(items)]
    return out


def _distinct(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(item == seen for seen in out):
            out.append(item)
    return out


def assert_exactly_once(
    delivered: Iterable[Any], sent: Iterable[Any], *, ordered: bool = True
) -> None:
    """Assert every sent item was delivered exactly once, nothing else was, in the sent order.

    Items compare with ``==`` (a :class:`~rxlens.events.LensEvent` by content, id and session,
    not by receive time, so a replayed copy equals the original). ``ordered=False`` accepts any
    order. Items sent twice (equal) must be delivered as many times.

    >>> assert_exactly_once(delivered=[1, 2, 3], sent=[1, 2, 3])
    >>> assert_exactly_once([2, 1], [1, 2], ordered=False)

    Raises:
        AssertionError: naming the first item never delivered, the first delivered too often,
            the first delivered that was never sent, or the first place the order differs.
    """
    got = list(delivered)
    want = list(sent)
    problems: list[str] = []
    in_got, in_want = _counter(got), _counter(want)
    nth = _occurrences(want)
    missing = [(i, item) for i, item in enumerate(want) if nth[i] > in_got(item)]
    extra = [item for item in got if in_want(item) == 0]
    repeated = _distinct(item for item in got if 0 < in_want(item) < in_got(item))
    if missing:
        i, item = missing[0]
        problems.append(
            f"{len(missing)} sent item{'s' * (len(missing) != 1)} never delivered "
            f"(first: {_short(item)} at sent[{i}])"
        )
    if repeated:
        item = repeated[0]
        problems.append(
            f"{len(repeated)} delivered more often than sent "
            f"(first: {_short(item)}, {in_got(item)} times, sent {in_want(item)})"
        )
    if extra:
        problems.append(
            f"{len(extra)} delivered but never sent (first: {_short(extra[0])} "
            f"at delivered[{next(i for i, x in enumerate(got) if x == extra[0])}])"
        )
    if not problems and ordered and got != want:
        i = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        problems.append(
            f"out of order: delivered[{i}] is {_short(got[i])}, but sent[{i}] is {_short(want[i])}"
        )
    if problems:
        raise AssertionError("not exactly once: " + "; ".join(problems))


def assert_no_loss(
    windows: Iterable[Sequence[Any]], items: Iterable[Any], *, overlapping: bool = False
) -> None:
    """Assert windows hold every item: tumbling windows, joined, are exactly the items in order.

    With ``overlapping=True`` (sliding windows) every item must be in at least one window and
    every window must be a run of consecutive items.

    >>> assert_no_loss([[1, 2], [3], []], [1, 2, 3])
    >>> assert_no_loss([[1, 2, 3], [2, 3, 4], [3, 4]], [1, 2, 3, 4], overlapping=True)

    Raises:
        AssertionError: naming the first item lost, or the first window that holds something
            out of place.
    """
    spans = [list(window) for window in windows]
    want = list(items)
    if not overlapping:
        joined = [item for window in spans for item in window]
        if joined == want:
            return
        at = next(
            (i for i, (a, b) in enumerate(zip(joined, want, strict=False)) if a != b),
            min(len(joined), len(want)),
        )
        where, offset = 0, at
        while where < len(spans) and offset >= len(spans[where]):
            offset -= len(spans[where])
            where += 1
        if at < len(want) and at < len(joined):
            raise AssertionError(
                f"windows lost or reordered items: item {at} is {_short(want[at])}, but "
                f"window {where} holds {_short(joined[at])} there "
                f"({len(joined)} items in {len(spans)} windows, {len(want)} sent)"
            )
        if at < len(want):
            raise AssertionError(
                f"windows lost {len(want) - at} item(s) at the end, from item {at}: "
                f"{_short(want[at])} ({len(joined)} items in {len(spans)} windows, "
                f"{len(want)} sent)"
            )
        raise AssertionError(
            f"windows hold {len(joined) - at} item(s) more than sent, from window {where}: "
            f"{_short(joined[at])}"
        )
    covered = [False] * len(want)
    for w, window in enumerate(spans):
        if not window:
            continue
        starts = [i for i, item in enumerate(want) if item == window[0]]
        start = next((i for i in starts if want[i : i + len(window)] == window), None)
        if start is None:
            raise AssertionError(f"window {w} is not a run of consecutive items: {_short(window)}")
        for i in range(start, start + len(window)):
            covered[i] = True
    if not all(covered):
        i = covered.index(False)
        raise AssertionError(
            f"{covered.count(False)} item(s) in no window (first: {_short(want[i])}, item {i})"
        )


def _timed(recording_or_stream: Any) -> list[tuple[float, Any]]:
    if isinstance(recording_or_stream, (str, os.PathLike)):
        from rxlens.recording import read_recording

        recording_or_stream = list(read_recording(recording_or_stream))
    pairs = list(recording_or_stream)
    if pairs and all(isinstance(item, LensEvent) for item in pairs):
        # Events in recorded order at their receive times; a clock step back (receive times
        # are wall-clock) replays the event at once rather than out of order.
        first, latest = pairs[0].received_at, 0.0
        timed: list[tuple[float, Any]] = []
        for event in pairs:
            latest = max(latest, event.received_at - first)
            timed.append((latest, event))
        return timed
    return [(float(at), event) for at, event in pairs]


def assert_same_at_any_speed(
    pipeline: Callable[[Observable[Any]], Observable[_T]],
    recording_or_stream: Any,
    *,
    speeds: Sequence[float] = SPEEDS,
) -> list[_T]:
    """Assert the pipeline gives the same values whatever speed the stream is replayed at.

    ``recording_or_stream`` is a recording's path (its events at their ``received_at``
    times), a list of events (the same), or ``(seconds, event)`` pairs such as
    :func:`~rxlens.testing.strategies.lens_streams` draws. The stream runs in virtual time
    (:func:`rxlens.testing.run`) at each of ``speeds`` (4.0: four times as fast); the events
    themselves keep their ``received_at``. A pipeline that computes on event time (windows of
    ``received_at`` or sensor positions, counts, votes) passes; one that reads the clock (time
    windows, rates, debounces on scheduler time) fails, naming the speed and the first
    difference. Returns the values (at the first speed).

    >>> from reactivex import operators as ops
    >>> from rxlens.events import from_payload
    >>> ok = from_payload({"type": "inference.result", "event_data": {"response": ["ok"]}})
    >>> assert_same_at_any_speed(lambda s: s.pipe(ops.count()), [(0.0, ok), (3.0, ok)])
    [2]

    Raises:
        AssertionError: the values differ between two speeds.
        ValueError: no speeds, or one not positive.
    """
    if not speeds or any(not speed > 0 for speed in speeds):
        raise ValueError(f"speeds must be positive numbers, got {list(speeds)!r}")
    pairs = _timed(recording_or_stream)
    baseline: list[_T] | None = None
    for speed in speeds:
        values = run(pipeline, [(at / speed, event) for at, event in pairs]).values
        if baseline is None:
            baseline = values
            continue
        if values != baseline:
            at = next(
                (i for i, (a, b) in enumerate(zip(values, baseline, strict=False)) if a != b),
                min(len(values), len(baseline)),
            )
            first = _short(baseline[at]) if at < len(baseline) else "nothing"
            other = _short(values[at]) if at < len(values) else "nothing"
            raise AssertionError(
                f"the pipeline's output depends on replay speed: at speed {speeds[0]} it "
                f"emitted {len(baseline)} value(s), at speed {speed} {len(values)}; the first "
                f"difference is value {at}: {first} at speed {speeds[0]}, {other} at speed "
                f"{speed}"
            )
    assert baseline is not None
    return baseline
