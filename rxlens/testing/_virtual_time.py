"""Virtual time for timed Lens streams: ``cold``, ``hot`` and ``run`` on a ``TestScheduler``.

RxPY's :class:`~reactivex.testing.TestScheduler` runs hours of stream in no time and says
exactly when every value came out, but its plumbing (ticks, ``on_next`` records, default
create/subscribe/dispose times of 100/200/1000) stands between a user and a three-line property
test. These helpers take the ``(seconds, event)`` pairs a recording or
:func:`rxlens.testing.strategies.lens_streams` gives, in seconds of virtual time::

    >>> from reactivex import operators as ops
    >>> from rxlens.events import from_payload
    >>> ok = from_payload({"type": "inference.result", "event_data": {"response": ["ok"]}})
    >>> emitted = run(lambda events: events.pipe(ops.map(lambda e: e.text)), [(1.5, ok)])
    >>> emitted
    [(1.5, 'ok')]
    >>> emitted.completed_at
    1.5
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.testing import ReactiveTest, TestScheduler

__all__ = ["HOT_START", "Emitted", "cold", "hot", "run"]

_T = TypeVar("_T")
_E = TypeVar("_E")

#: Where :func:`hot` puts second 0 by default: just after ``TestScheduler.start``'s default
#: subscription (at 200), so a subscriber started the usual way sees every event.
HOT_START = ReactiveTest.subscribed + 1.0


class Emitted(list[tuple[float, _T]]):
    """What a pipeline emitted: ``(virtual seconds, value)`` pairs, in order.

    ``completed_at`` is when it completed (``None``: it did not, or failed); ``error`` the error
    it ended with (only kept by ``run(..., errors="keep")``).
    """

    completed_at: float | None
    error: BaseException | None

    def __init__(self) -> None:
        super().__init__()
        self.completed_at = None
        self.error = None

    @property
    def values(self) -> list[_T]:
        """The values without their times."""
        return [value for _, value in self]


def _checked(timed_events: Iterable[tuple[float, _E]]) -> list[tuple[float, _E]]:
    pairs = [(float(at), event) for at, event in timed_events]
    for (a, _), (b, _) in itertools.pairwise(pairs):
        if b < a:
            raise ValueError(f"timed events must be in time order: {b} s comes after {a} s")
    if pairs and pairs[0][0] < 0:
        raise ValueError(f"timed events cannot be before 0 s (got {pairs[0][0]} s)")
    return pairs


def _on_next(at: float, value: Any) -> Any:
    # The clock of a TestScheduler is float seconds; ReactiveTest's annotations say int ticks.
    return ReactiveTest.on_next(at, value)  # type: ignore[arg-type]


def _on_completed(at: float) -> Any:
    return ReactiveTest.on_completed(at)  # type: ignore[arg-type]


def cold(
    timed_events: Iterable[tuple[float, _E]],
    scheduler: TestScheduler,
    *,
    complete: bool = True,
) -> Observable[_E]:
    """A cold Observable on ``scheduler``: each subscriber gets every event ``seconds`` after it
    subscribed, then completion at the last event's time (``complete=False``: never).

    >>> from reactivex.testing import TestScheduler
    >>> scheduler = TestScheduler()
    >>> source = cold([(0.5, "a"), (2.0, "b")], scheduler)
    >>> observer = scheduler.start(lambda: source)   # subscribes at 200
    >>> [(m.time, m.value.kind) for m in observer.messages]
    [(200.5, 'N'), (202.0, 'N'), (202.0, 'C')]

    Raises:
        ValueError: the events are not in time order, or one is before 0 s.
    """
    pairs = _checked(timed_events)
    messages: list[Any] = [_on_next(at, event) for at, event in pairs]
    if complete:
        messages.append(_on_completed(pairs[-1][0] if pairs else 0.0))
    return scheduler.create_cold_observable(*messages)


def hot(
    timed_events: Iterable[tuple[float, _E]],
    scheduler: TestScheduler,
    *,
    start: float = HOT_START,
    complete: bool = True,
) -> Observable[_E]:
    """A hot Observable on ``scheduler``: event ``(seconds, e)`` goes out at absolute virtual
    time ``start + seconds`` to whoever is subscribed then (late subscribers miss it, as with a
    live session); completion at the last event's time (``complete=False``: never).

    ``start`` defaults to :data:`HOT_START` (201), just after ``scheduler.start``'s default
    subscription at 200:

    >>> from reactivex.testing import TestScheduler
    >>> scheduler = TestScheduler()
    >>> source = hot([(0.0, "a"), (5.0, "b")], scheduler)
    >>> observer = scheduler.start(lambda: source, subscribed=203)   # joins late
    >>> [(m.time, m.value.kind) for m in observer.messages]
    [(206.0, 'N'), (206.0, 'C')]

    Raises:
        ValueError: the events are not in time order, or one is before 0 s.
    """
    pairs = _checked(timed_events)
    messages: list[Any] = [_on_next(start + at, event) for at, event in pairs]
    if complete:
        messages.append(_on_completed(start + (pairs[-1][0] if pairs else 0.0)))
    return scheduler.create_hot_observable(*messages)


def run(
    pipeline: Callable[[Observable[_E]], Observable[_T]],
    timed_events: Iterable[tuple[float, _E]],
    *,
    until: float | None = None,
    errors: Literal["raise", "keep"] = "raise",
) -> Emitted[_T]:
    """Run ``pipeline`` on the timed events in virtual time; return what it emitted, and when.

    The events go out as a :func:`cold` source subscribed at 0 s, with the ``TestScheduler`` as
    the subscription's scheduler, so operators that default to it (``window_results``,
    ``rising_edge(debounce=...)``, ``heartbeat_timeout``, ...) run in virtual time too. Times in
    the result are seconds from the subscription, like the input's. The subscription is disposed
    at ``until`` (default: an hour of virtual time after the last event), which stops pipelines
    that never complete.

    If the pipeline fails, its error is raised (``errors="keep"``: kept in ``.error`` and the
    values emitted before it returned). A property test is then three lines::

        @given(lens_streams())
        def test_my_pipeline_keeps_results(stream):
            assert run(my_pipeline, stream).values == expected(stream)

    Raises:
        ValueError: the events are not in time order, or one is before 0 s.
        Exception: whatever the pipeline failed with (with ``errors="raise"``).
    """
    if errors not in ("raise", "keep"):
        raise ValueError(f"errors must be 'raise' or 'keep', not {errors!r}")
    pairs = _checked(timed_events)
    scheduler = TestScheduler()
    source = cold(pairs, scheduler)
    emitted: Emitted[_T] = Emitted()
    end = until if until is not None else (pairs[-1][0] if pairs else 0.0) + 3600.0
    subscription: list[abc.DisposableBase] = []

    def now() -> float:
        return float(scheduler.clock)

    def on_next(value: _T) -> None:
        emitted.append((now(), value))

    def on_error(error: Exception) -> None:
        emitted.error = error

    def on_completed() -> None:
        emitted.completed_at = now()

    def subscribe(_: abc.SchedulerBase, __: Any = None) -> abc.DisposableBase:
        subscription.append(
            pipeline(source).subscribe(on_next, on_error, on_completed, scheduler=scheduler)
        )
        return Disposable()

    def dispose(_: abc.SchedulerBase, __: Any = None) -> abc.DisposableBase:
        for disposable in subscription:
            disposable.dispose()
        scheduler.stop()
        return Disposable()

    scheduler.schedule_absolute(0.0, subscribe)
    scheduler.schedule_absolute(end, dispose)
    scheduler.start()
    if emitted.error is not None and errors == "raise":
        raise emitted.error
    return emitted
