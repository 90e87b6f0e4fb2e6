"""Event time: windows and clocks driven by the events' own timestamps, not by the wall clock.

A recording re-analysed with wall-clock windows gives other windows (and so other votes and
alerts) at every replay speed: the windows follow when events *arrive*. With event time, an
event's place comes from a time it carries (when it was received, or the sensor time the lens
reports), and a window closes when the events themselves show that its time has passed (a
*watermark*), so a recording gives the same answer live, at full speed and at any pace.

This module holds what the event-time operators share: reading an event's time (:func:`time_of`),
the window record (:class:`Window`) and the summary that keeps a window's context
(:class:`Windowed`), and the windowing state machine (:class:`EventTimeWindows`), which is pure
(no scheduler, no lock) so it can be tested item by item.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, overload

from reactivex import Observable
from reactivex import operators as ops

_T = TypeVar("_T")
_V = TypeVar("_V")

#: What ``time=`` accepts: ``"received"``, ``"sensor"``, or a function from an item to epoch
#: seconds (``None`` when the item has no time).
TimeSpec = Literal["received", "sensor"] | Callable[[Any], "float | None"]


def received_time(item: Any) -> float | None:
    """``item.received_at``: when rxlens received the frame (kept in recordings)."""
    value = getattr(item, "received_at", None)
    return _number(value)


def sensor_time(item: Any) -> float | None:
    """The time the lens reports for a result.

    ``query_timestamp`` (epoch seconds) when the result has one, else ``sensor_timestamp`` as an
    offset in seconds (a number, or a video position ``"HH:MM:SS"``), else ``None``.
    """
    value = _number(getattr(item, "query_timestamp", None))
    if value is not None:
        return value
    position = getattr(item, "sensor_timestamp", None)
    if isinstance(position, str):
        return _hms_seconds(position)
    return _number(position)


def time_of(spec: TimeSpec) -> Callable[[Any], float | None]:
    """The function that reads an item's event time for a ``time=`` argument.

    Raises:
        ValueError: ``spec`` is neither ``"received"``, ``"sensor"`` nor callable.
    """
    if spec == "received":
        return received_time
    if spec == "sensor":
        return sensor_time
    if callable(spec):
        return spec
    raise ValueError(f'time must be "received", "sensor" or a callable, got {spec!r}')


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int past any float (JSON allows any number of digits)
        return None
    return value if math.isfinite(value) else None


def _hms_seconds(text: str) -> float | None:
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3:
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    total = 0.0
    for number in numbers:
        total = total * 60 + number
    return total if math.isfinite(total) else None


def checked_time(reader: Callable[[Any], float | None], item: Any) -> float | None:
    """``reader(item)`` as a finite float or ``None``.

    Raises:
        TypeError: a user's time function returned something that is not a number.
    """
    value = reader(item)
    if value is None:
        return None
    number = _number(value)
    if number is None:
        raise TypeError(f"time function must return a finite number or None, got {value!r}")
    return number


@dataclass(frozen=True)
class Window(Sequence[_T]):
    """One window of results, with where it sits: a read-only sequence of its results.

    ``start`` and ``end`` bound it in event time, ``[start, end)`` in epoch seconds (``None`` for
    windows that are not timed by the events: count windows, or wall-clock ones split per
    session). ``session_id`` is the session it belongs to when windows are made per session,
    else ``None``. ``late`` counts the events that arrived after their own window had closed;
    they are counted on (and kept in ``late_results`` of) the window that was open when they
    arrived, never dropped silently.

    It behaves as the list of its ``results`` (``len``, indexing, iteration), so the window
    aggregates (:func:`~rxlens.operators.label_counts`, ...) take it as they take a list, and
    keep its context in a :class:`Windowed` record.
    """

    results: tuple[_T, ...] = ()
    start: float | None = None
    end: float | None = None
    session_id: str | None = None
    late: int = 0
    late_results: tuple[_T, ...] = field(default=(), repr=False)

    def __len__(self) -> int:
        return len(self.results)

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[_T, ...]: ...

    def __getitem__(self, index: int | slice) -> _T | tuple[_T, ...]:
        return self.results[index]

    def __iter__(self) -> Iterator[_T]:
        return iter(self.results)

    def summary(self, value: _V) -> Windowed[_V]:
        """``value`` (an aggregate of this window) with the window's context."""
        return Windowed(
            value=value,
            session_id=self.session_id,
            start=self.start,
            end=self.end,
            size=len(self.results),
            late=self.late,
        )


@dataclass(frozen=True)
class Windowed(Generic[_V]):
    """An aggregate of one :class:`Window` (a vote, counts, means) with the window's context.

    ``value`` is what the aggregate would emit for a plain list; ``session_id``, ``start``,
    ``end`` and ``late`` are the window's; ``size`` its number of results. Records like these
    line up with windows and can be plotted or joined on session and time.
    """

    value: _V
    session_id: str | None = None
    start: float | None = None
    end: float | None = None
    size: int = 0
    late: int = 0


def summarise(window: Sequence[Any], value: _V) -> _V | Windowed[_V]:
    """``value`` as is for a plain list, or in a :class:`Windowed` for a :class:`Window`."""
    if isinstance(window, Window):
        return window.summary(value)
    return value


class WindowAggregate(Generic[_V]):
    """An operator mapping each window to an aggregate, keeping a :class:`Window`'s context.

    Applied to a stream of plain lists it emits the aggregates; applied to a stream of
    :class:`Window` records it emits :class:`Windowed` records (the aggregate in ``value``).
    """

    def __init__(self, compute: Callable[[Sequence[Any]], _V]) -> None:
        self._compute = compute

    @overload
    def __call__(self, source: Observable[Window[Any]]) -> Observable[Windowed[_V]]: ...

    @overload
    def __call__(self, source: Observable[Sequence[Any]]) -> Observable[_V]: ...

    def __call__(self, source: Observable[Any]) -> Observable[Any]:
        compute = self._compute

        def aggregate(window: Sequence[Any]) -> _V | Windowed[_V]:
            return summarise(window, compute(window))

        return source.pipe(ops.map(aggregate))


class EventTimeWindows(Generic[_T]):
    """Tumbling or sliding windows in event time, closed by a watermark (pure state machine).

    Windows are aligned on multiples of ``step`` (``slide``, else ``seconds``) from the epoch,
    so the same events give the same windows whatever came before them: window ``k`` covers
    ``[k * step, k * step + seconds)``. The watermark is the largest event time seen minus
    ``lateness``; a window is emitted once the watermark reaches its end. Every window from the
    first event's to the last is emitted, empty ones included (a quiet span is an answer too).

    :meth:`push` takes one item and returns the windows it closed; :meth:`flush` (at the
    stream's end) returns the rest. An item older than every open window is *late*: it is
    counted on the first window still open (or, if none is, on the next one to open).
    An item without a time takes the latest time seen (before any, it waits for the first).
    """

    def __init__(
        self,
        seconds: float,
        slide: float | None,
        lateness: float,
        session_id: str | None = None,
    ) -> None:
        self._size = float(seconds)
        self._step = float(slide if slide is not None else seconds)
        self._lateness = float(lateness)
        self._session_id = session_id
        # Open windows by index k, with their items in arrival order.
        self._open: dict[int, list[_T]] = {}
        self._late: dict[int, list[_T]] = {}
        self._next = 0  # the lowest window index not yet emitted (valid once _started)
        self._started = False
        self._max_time = -math.inf
        self._untimed: list[_T] = []

    def _first_index(self, at: float) -> int:
        # The first window containing `at`: k * step + size > at.
        k = math.floor((at - self._size) / self._step) + 1
        while k * self._step + self._size <= at:
            k += 1
        while k > 0 and (k - 1) * self._step + self._size > at:
            k -= 1
        return k

    def _last_index(self, at: float) -> int:
        # The last window containing `at`: k * step <= at.
        return math.floor(at / self._step)

    def push(self, item: _T, at: float | None) -> list[Window[_T]]:
        """Add ``item`` at event time ``at`` (``None``: no time); return the windows it closed."""
        if at is None:
            if not self._started:
                self._untimed.append(item)
                return []
            at = self._max_time
        if not self._started:
            self._started = True
            self._next = self._first_index(at)
            self._max_time = at
            for waiting in self._untimed:
                self._add(waiting, at)
            self._untimed = []
        self._add(item, at)
        if at > self._max_time:
            self._max_time = at
        return self._close(self._max_time - self._lateness)

    def _add(self, item: _T, at: float) -> None:
        first = self._first_index(at)
        last = self._last_index(at)
        if last < self._next:
            # Every window holding `at` was already emitted: late, counted on the next one.
            self._late.setdefault(self._next, []).append(item)
            return
        for k in range(max(first, self._next), last + 1):
            self._open.setdefault(k, []).append(item)

    def _close(self, watermark: float) -> list[Window[_T]]:
        closed: list[Window[_T]] = []
        while self._next * self._step + self._size <= watermark:
            closed.append(self._emit(self._next))
        return closed

    def _emit(self, k: int) -> Window[_T]:
        items = self._open.pop(k, [])
        late = self._late.pop(k, [])
        self._next = k + 1
        start = k * self._step
        return Window(
            results=tuple(items),
            start=start,
            end=start + self._size,
            session_id=self._session_id,
            late=len(late),
            late_results=tuple(late),
        )

    def flush(self) -> list[Window[_T]]:
        """The windows still open at the stream's end, in order (through the last item's)."""
        if not self._started:
            if not self._untimed:
                return []
            # Items but no time at all: one window without bounds, so nothing is lost.
            items, self._untimed = self._untimed, []
            return [Window(results=tuple(items), session_id=self._session_id)]
        last = max([*self._open, *self._late, self._last_index(self._max_time)])
        closed: list[Window[_T]] = []
        while self._next <= last:
            closed.append(self._emit(self._next))
        return closed


__all__ = [
    "EventTimeWindows",
    "TimeSpec",
    "Window",
    "WindowAggregate",
    "Windowed",
    "checked_time",
    "received_time",
    "sensor_time",
    "summarise",
    "time_of",
]
