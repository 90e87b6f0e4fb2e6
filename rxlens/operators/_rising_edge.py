"""``rising_edge``: emit when a condition turns true after being false (a one-shot alert)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import GroupedObservable, Observable, abc
from reactivex import operators as ops
from reactivex.disposable import CompositeDisposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxlens.operators._event_time import TimeSpec, checked_time, time_of

_T = TypeVar("_T")


def rising_edge(
    predicate: Callable[[_T], bool],
    debounce: float = 0.0,
    scheduler: abc.SchedulerBase | None = None,
    *,
    time: TimeSpec | None = None,
    per_session: bool = False,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Emit the item at which ``predicate`` turns true, once per false-to-true transition.

    The state starts false, so a first item that satisfies the predicate fires. While the
    predicate stays true nothing more is emitted; a false item re-arms it. This is the
    vendor cookbook's alert hysteresis (``"alert:" in text.lower()`` fires once per alert), e.g.
    ``results.pipe(rising_edge(lambda r: "alert:" in (r.text or "").lower()))``.

    With ``debounce > 0`` (seconds of scheduler time) the state only changes once the
    predicate has held its new value for ``debounce`` seconds, i.e. no item with the other
    value arrived within that time. A rise is then emitted ``debounce`` seconds after the item
    that started it (that item is the one emitted); a true/false flapping faster than
    ``debounce`` emits nothing, and a brief false inside an alert does not re-arm it. A rise
    still pending when the source completes is dropped (it was not confirmed). Time comes from
    ``scheduler`` (else the subscription's, else ``TimeoutScheduler``); with ``debounce=0``
    no timer is used and items are emitted synchronously.

    Errors raised by ``predicate`` are sent as ``on_error``. The timer and the source are
    serialised by one lock per subscription, so emissions never overlap.

    **Event time** (``time=``, see :func:`~rxlens.operators.window_results` for the choices:
    ``"received"``, ``"sensor"``, a callable): the debounce is measured on the items' own
    times instead of a timer, so a recording gives the same alerts at any replay speed. The
    clock is the latest item time seen (an item without a time reads the clock). A pending
    change is confirmed when an item at least ``debounce`` later than the one that started it
    arrives before any item with the other value; it is emitted just before that item is
    handled. A change still pending at the stream's end is dropped, as in wall-clock mode.
    Items from :func:`~rxlens.operators.majority_vote` after event-time windows are
    :class:`~rxlens.operators.Windowed` records, timed by ``time=lambda w: w.end``.

    ``per_session=True`` keeps one state (and one debounce) per ``session_id`` of the items,
    so the sessions of a merged stream never raise or re-arm each other's alerts.

    Marble diagrams (one character is one second; T satisfies the predicate, F does not)::

        source:                      -T-T-F-T-F|
        rising_edge(p):              -T-----T--|

        source:                      -T-F-T------F-T-|
        rising_edge(p, debounce=3):  --------T-------|
            (the first T flaps back within 3 s; the second holds from 5 to 8 and is emitted
             at 8; the F at 12 is followed by T at 14 within 3 s, so the alert never re-arms)

        event times:                     T@1 F@2 T@5 T@7 T@8 F@12 T@14 T@20 |
        rising_edge(p, debounce=3, time=t):          T@5 (emitted on T@8)        |

    Raises:
        ValueError: ``debounce`` is negative, or ``time`` is not ``"received"``, ``"sensor"``
            or callable.
    """
    if debounce < 0:
        raise ValueError(f"debounce must be >= 0, got {debounce!r}")
    if per_session:
        single = rising_edge(predicate, debounce, scheduler, time=time)
        return _per_session(single)
    if time is not None:
        return _event_time(predicate, debounce, time_of(time))

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            lock = threading.RLock()
            # `state` is the debounced condition; `pending` the opposite value seen but not yet
            # held for `debounce` seconds, with the item that started it.
            state = False
            pending: tuple[bool, _T] | None = None
            timer = SerialDisposable()
            stopped = False

            def confirm(value: bool, item: _T) -> None:
                nonlocal state
                if value and not state:
                    observer.on_next(item)
                state = value

            def on_next(item: _T) -> None:
                nonlocal pending, stopped
                with lock:
                    if stopped:
                        return
                    try:
                        value = bool(predicate(item))
                    except Exception as error:
                        stopped = True
                        timer.dispose()
                        observer.on_error(error)
                        return
                    if debounce == 0:
                        confirm(value, item)
                        return
                    if pending is not None:
                        if pending[0] == value:
                            return  # the pending change continues; its timer keeps running
                        pending = None  # the change did not hold: cancel it
                        timer.disposable = None
                        return
                    if value == state:
                        return
                    pending = (value, item)
                    sched = scheduler or sub_scheduler or TimeoutScheduler.singleton()
                    timer.disposable = sched.schedule_relative(debounce, fire, pending)

            def fire(_: abc.SchedulerBase, started: Any) -> None:
                nonlocal pending
                with lock:
                    # A cancelled timer may still run if it was already due; only the timer of
                    # the current pending change may confirm it.
                    current = pending
                    if stopped or current is None or current is not started:
                        return
                    pending = None
                    confirm(current[0], current[1])

            def on_error(error: Exception) -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    timer.dispose()
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    timer.dispose()
                    observer.on_completed()

            upstream = source.subscribe(on_next, on_error, on_completed, scheduler=sub_scheduler)
            return CompositeDisposable(timer, upstream)

        return Observable(subscribe)

    return operator


def _session_of(item: Any) -> str | None:
    value = getattr(item, "session_id", None)
    return value if isinstance(value, str) else None


def _per_session(
    single: Callable[[Observable[_T]], Observable[_T]],
) -> Callable[[Observable[_T]], Observable[_T]]:
    def per_group(group: GroupedObservable[str | None, _T]) -> Observable[_T]:
        return group.pipe(single)

    def operator(source: Observable[_T]) -> Observable[_T]:
        return source.pipe(ops.group_by(_session_of), ops.flat_map(per_group))

    return operator


def _event_time(
    predicate: Callable[[_T], bool],
    debounce: float,
    reader: Callable[[Any], float | None],
) -> Callable[[Observable[_T]], Observable[_T]]:
    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            # No timer: the items' times drive the debounce, and the source serialises them.
            state = False
            # The opposite value seen but not yet held, its item, and its event time (None
            # until some item has a time).
            pending: tuple[bool, _T, float | None] | None = None
            clock: float | None = None
            stopped = False

            def on_next(item: _T) -> None:
                nonlocal state, pending, clock, stopped
                if stopped:
                    return
                try:
                    value = bool(predicate(item))
                    at = checked_time(reader, item)
                except Exception as error:
                    stopped = True
                    observer.on_error(error)
                    return
                if at is not None and (clock is None or at > clock):
                    clock = at
                if pending is not None and clock is not None:
                    if pending[2] is None:
                        pending = (pending[0], pending[1], clock)
                    elif clock >= pending[2] + debounce:
                        # The pending change held for `debounce` of event time: confirm it
                        # before handling the item that showed so.
                        confirmed, pending = pending, None
                        if confirmed[0] and not state:
                            observer.on_next(confirmed[1])
                        state = confirmed[0]
                if debounce == 0:
                    if value and not state:
                        observer.on_next(item)
                    state = value
                    return
                if pending is not None:
                    if pending[0] != value:
                        pending = None  # the change did not hold: cancel it
                    return
                if value != state:
                    pending = (value, item, at if at is not None else clock)

            def on_error(error: Exception) -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_completed()

            return source.subscribe(on_next, on_error, on_completed, scheduler=sub_scheduler)

        return Observable(subscribe)

    return operator


__all__ = ["rising_edge"]
