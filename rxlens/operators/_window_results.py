"""``window_results``: gather a stream into lists, by count, by time, or whichever comes first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

from reactivex import GroupedObservable, Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable

from rxlens.operators._event_time import (
    EventTimeWindows,
    TimeSpec,
    Window,
    checked_time,
    time_of,
)

_T = TypeVar("_T")


@overload
def window_results(
    count: int | None = None,
    seconds: float | None = None,
    slide: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
    *,
    time: None = None,
    allowed_lateness: float = 0.0,
    per_session: Literal[False] = False,
) -> Callable[[Observable[_T]], Observable[list[_T]]]: ...


@overload
def window_results(
    count: int | None = None,
    seconds: float | None = None,
    slide: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
    *,
    time: TimeSpec | None = None,
    allowed_lateness: float = 0.0,
    per_session: bool = False,
) -> Callable[[Observable[_T]], Observable[Window[_T]]]: ...


def window_results(
    count: int | None = None,
    seconds: float | None = None,
    slide: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
    *,
    time: TimeSpec | None = None,
    allowed_lateness: float = 0.0,
    per_session: bool = False,
) -> Callable[[Observable[_T]], Observable[Any]]:
    """Gather items into lists: tumbling windows, or sliding ones when ``slide`` is given.

    Choose one of three shapes:

    - ``count=n``: a list every ``n`` items. With ``slide=k`` (an int), a new window opens every
      ``k`` items, so consecutive windows overlap by ``n - k`` items.
    - ``seconds=s``: a list every ``s`` seconds of scheduler time, *including empty lists* for
      spans with no items (a quiet span is an answer too: "nothing happened"). With
      ``slide=k`` (seconds), a window of length ``s`` opens every ``k`` seconds.
    - ``count=n, seconds=s``: tumbling only; a window closes at ``n`` items or ``s`` seconds
      after it opened, whichever comes first.

    Time windows start at subscription and cover ``(start, start + seconds]``: an item due at
    the very instant a window closes is delivered before the close, so it joins that window
    (in real time such ties do not occur; in virtual time this makes them deterministic).
    On completion every open window is emitted as it
    stands (count windows only when non-empty); on error the open windows are dropped and the
    error is forwarded. Tumbling windows together hold every item exactly once, in order.

    Built on RxPY's ``buffer_with_count``, ``buffer_with_time`` and
    ``buffer_with_time_or_count`` (reactivex >= 6.1, which serialise the timer and the source
    under one lock, so emissions never overlap). ``scheduler`` times the windows; it defaults
    to the subscription's scheduler, then to :class:`reactivex.scheduler.TimeoutScheduler`.

    Marble diagrams (each character is one second)::

        source:                     -a-b-c-d-e-|
        window_results(count=2):    ---[ab]-[cd]-[e]|

        source:                     -a-b---c----d-|
        window_results(seconds=3):  ---x--y--z--w-(v|)
            x=[a, b]  y=[]  z=[c]  w=[d]  v=[]     (windows close at 3, 6, 9, 12, then 13)

        source:                     -a-b-c-d-|
        window_results(count=3, slide=1):
                                    -----x-y-(zw|)
            x=[a, b, c]  y=[b, c, d]  z=[c, d]  w=[d]

        source:                     -abc---d-----|
        window_results(count=2, seconds=5):
                                    --x----y----z(v|)
            x=[a, b] (count)  y=[c, d] (time, 5 s after x)  z=[] (time)  v=[] (completion)

    **Event time** (``time=``): windows follow a time the events carry instead of the clock, so
    a recording gives the same windows live, replayed at full speed or at any pace. ``time`` is
    ``"received"`` (``received_at``, kept in recordings), ``"sensor"`` (the result's
    ``query_timestamp``, else its ``sensor_timestamp`` as an offset in seconds) or a function
    from an item to epoch seconds (``None``: no time). It needs ``seconds=`` (``slide=``
    allowed; not ``count=``). Windows are aligned on multiples of ``slide`` (else ``seconds``)
    from the epoch and cover ``[start, end)``. A window closes once an event shows that
    ``end + allowed_lateness`` has passed (the *watermark*: the latest event time minus
    ``allowed_lateness``); an event whose every window has already closed is *late*: it is
    counted (``late``) and kept (``late_results``) on the next window, never dropped. An item
    without a time takes the latest time seen. Every window from the first item's to the last
    is emitted (empty ones too); the stream's end flushes the open ones. No scheduler and no
    timer are involved: windows are emitted on the thread of the item that closed them.
    Errors raised by ``time`` are sent as ``on_error``.

    With ``time=`` or ``per_session=True`` each window is a :class:`~rxlens.operators.Window`
    record (a read-only sequence of its results with ``session_id``, ``start``, ``end``,
    ``late``), and the aggregates after it (:func:`~rxlens.operators.majority_vote`, ...) emit
    :class:`~rxlens.operators.Windowed` records that keep that context. Without them, plain
    lists come out exactly as before.

    **Per session** (``per_session=True``): each session of a merged stream (by the items'
    ``session_id``) is windowed on its own, with its own watermark, in one call; the windows
    carry their ``session_id``. Without ``time=`` the sessions get wall-clock (or count)
    windows, whose ``start``/``end`` are ``None``.

    Event-time marble (the letters' times are their positions; ``allowed_lateness=0``)::

        source (event times):          a@1 b@2 c@4 d@1 e@7 |
        window_results(seconds=3, time=t):
                                       -------x----y-(z|)
            x=[a, b] on [0, 3) (closed by c@4)   y=[c] on [3, 6) with late=1 (d@1),
            closed by e@7   z=[e] on [6, 9) (flushed at the end)

    Raises:
        ValueError: no shape was chosen, a size is not positive, or ``slide`` is given with
            both ``count`` and ``seconds``, is a non-integer with ``count``, or exceeds the
            window (which would skip items); ``time=`` without ``seconds=`` or with
            ``count=``, a negative ``allowed_lateness``, or a ``time`` that is not
            ``"received"``, ``"sensor"`` or callable.
    """
    if count is None and seconds is None:
        raise ValueError("window_results needs count=, seconds=, or both")
    if count is not None and (isinstance(count, bool) or count < 1):
        raise ValueError(f"count must be a positive int, got {count!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    if slide is not None:
        if count is not None and seconds is not None:
            raise ValueError("slide= works with count= or with seconds=, not with both")
        if not slide > 0:
            raise ValueError(f"slide must be positive, got {slide!r}")
        if count is not None and (isinstance(slide, bool) or int(slide) != slide):
            raise ValueError(f"with count=, slide counts items and must be an int, got {slide!r}")
        size = count if count is not None else seconds
        assert size is not None
        if slide > size:
            # Windows further apart than they are long would silently skip the items between them.
            raise ValueError(f"slide ({slide!r}) must not exceed the window ({size!r})")

    if not allowed_lateness >= 0:
        raise ValueError(f"allowed_lateness must be >= 0, got {allowed_lateness!r}")
    if time is not None:
        reader = time_of(time)
        if seconds is None or count is not None:
            raise ValueError("time= windows by seconds=: give seconds= (and no count=)")
        return _event_time(reader, seconds, slide, allowed_lateness, per_session)
    if per_session:
        return _per_session(_clock_windows(count, seconds, slide, scheduler))
    return _clock_windows(count, seconds, slide, scheduler)


def _clock_windows(
    count: int | None,
    seconds: float | None,
    slide: float | None,
    scheduler: abc.SchedulerBase | None,
) -> Callable[[Observable[_T]], Observable[list[_T]]]:
    if seconds is None:
        assert count is not None
        skip = None if slide is None else int(slide)
        return ops.buffer_with_count(count, skip)
    if count is None:
        return ops.buffer_with_time(seconds, slide, scheduler=scheduler)
    return ops.buffer_with_time_or_count(seconds, count, scheduler=scheduler)


def _session_of(item: Any) -> str | None:
    value = getattr(item, "session_id", None)
    return value if isinstance(value, str) else None


def _per_session(
    windows: Callable[[Observable[_T]], Observable[list[_T]]],
) -> Callable[[Observable[_T]], Observable[Window[_T]]]:
    # Wall-clock or count windows per session: one group (and one set of timers) per session.
    def per_group(group: GroupedObservable[str | None, _T]) -> Observable[Window[_T]]:
        def record(items: list[_T]) -> Window[_T]:
            return Window(results=tuple(items), session_id=group.key)

        return group.pipe(windows, ops.map(record))

    def operator(source: Observable[_T]) -> Observable[Window[_T]]:
        return source.pipe(ops.group_by(_session_of), ops.flat_map(per_group))

    return operator


def _event_time(
    reader: Callable[[Any], float | None],
    seconds: float,
    slide: float | None,
    lateness: float,
    per_session: bool,
) -> Callable[[Observable[_T]], Observable[Window[_T]]]:
    def operator(source: Observable[_T]) -> Observable[Window[_T]]:
        def subscribe(
            observer: abc.ObserverBase[Window[_T]], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            # The source serialises its notifications (the Rx contract) and no timer runs, so
            # this state needs no lock. Sessions are kept in order of first appearance.
            machines: dict[str | None, EventTimeWindows[_T]] = {}
            stopped = False

            def machine(key: str | None) -> EventTimeWindows[_T]:
                found = machines.get(key)
                if found is None:
                    found = machines[key] = EventTimeWindows(seconds, slide, lateness, key)
                return found

            def on_next(item: _T) -> None:
                nonlocal stopped
                if stopped:
                    return
                try:
                    at = checked_time(reader, item)
                except Exception as error:
                    stopped = True
                    observer.on_error(error)
                    return
                key = _session_of(item) if per_session else None
                for window in machine(key).push(item, at):
                    observer.on_next(window)

            def on_error(error: Exception) -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal stopped
                if stopped:
                    return
                stopped = True
                for each in machines.values():
                    for window in each.flush():
                        observer.on_next(window)
                observer.on_completed()

            upstream = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return Disposable(upstream.dispose)

        return Observable(subscribe)

    return operator


__all__ = ["Window", "window_results"]
