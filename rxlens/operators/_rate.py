"""``rate``: results per second, measured over consecutive spans of scheduler time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import CompositeDisposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxlens.operators._event_time import TimeSpec, Window
from rxlens.operators._window_results import window_results


def rate(
    seconds: float = 1.0,
    scheduler: abc.SchedulerBase | None = None,
    *,
    time: TimeSpec | None = None,
    allowed_lateness: float = 0.0,
) -> Callable[[Observable[Any]], Observable[float]]:
    """Emit, every ``seconds`` of scheduler time, how many items arrived per second in that span.

    The spans tumble from the subscription: at ``seconds``, ``2 * seconds``, ... it emits
    ``count / seconds`` (``0.0`` for a quiet span). On completion it emits the rate of the
    partial last span over its true length (nothing if that length is zero), then completes;
    errors pass through at once. Each span is timed from the subscription's start, not from the
    previous tick, so spans do not drift. Time comes from ``scheduler`` (else the subscription's
    scheduler, else :class:`~reactivex.scheduler.TimeoutScheduler`): to measure the pace of a
    recording, replay it at recorded pace (``rxlens.replay(path, speed=1.0)``), possibly on a
    virtual-time scheduler.

    The timer and the source are serialised by one lock per subscription, so emissions never
    overlap.

    **Event time** (``time=``: ``"received"``, ``"sensor"`` or a callable, as in
    :func:`~rxlens.operators.window_results`): the spans are event-time windows of
    ``seconds`` aligned on the epoch, closed by the items' own times (with
    ``allowed_lateness``), so a recording gives the same rates at any replay speed, without a
    scheduler. Each span emits ``count / seconds``, quiet spans included; the last span,
    flushed at the stream's end, is counted over its full length too. A late item (its span
    already emitted) counts in the span open when it arrived.

    Marble diagram (one character is one second)::

        source:             -a-b---c-|
        rate(seconds=4):    ----x---y(z|)      x=0.5 (2 in 4 s)  y=0.25  z=0.0 (0 in the last 1 s)

    Raises:
        ValueError: ``seconds`` is not positive, ``allowed_lateness`` is negative, or ``time``
            is not ``"received"``, ``"sensor"`` or callable.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    span = float(seconds)
    if time is not None:
        windows = window_results(seconds=span, time=time, allowed_lateness=allowed_lateness)

        def per_second(window: Window[Any]) -> float:
            return (len(window) + window.late) / span

        def timed(source: Observable[Any]) -> Observable[float]:
            return source.pipe(windows, ops.map(per_second))

        return timed

    def operator(source: Observable[Any]) -> Observable[float]:
        def subscribe(
            observer: abc.ObserverBase[float], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = scheduler or sub_scheduler or TimeoutScheduler.singleton()
            lock = threading.RLock()
            start = _seconds(sched.now)
            count = 0
            ticks = 0
            done = False
            timer = SerialDisposable()

            def tick(_: abc.SchedulerBase, __: Any = None) -> abc.DisposableBase | None:
                nonlocal count, ticks
                with lock:
                    if done:
                        return None
                    ticks += 1
                    value, count = count / span, 0
                    observer.on_next(value)
                    # Schedule from the start time so that late timers do not accumulate drift.
                    due = start + (ticks + 1) * span - _seconds(sched.now)
                    timer.disposable = sched.schedule_relative(max(due, 0.0), tick)
                return None

            def on_next(_: Any) -> None:
                nonlocal count
                with lock:
                    if not done:
                        count += 1

            def on_error(error: Exception) -> None:
                nonlocal done
                with lock:
                    if done:
                        return
                    done = True
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal done
                with lock:
                    if done:
                        return
                    done = True
                    elapsed = _seconds(sched.now) - (start + ticks * span)
                    if elapsed > 0:
                        observer.on_next(count / elapsed)
                    observer.on_completed()

            timer.disposable = sched.schedule_relative(span, tick)
            upstream = source.subscribe(on_next, on_error, on_completed, scheduler=sub_scheduler)
            return CompositeDisposable(timer, upstream)

        return Observable(subscribe)

    return operator


def _seconds(now: Any) -> float:
    """Scheduler time in seconds: schedulers report ``datetime`` (real) or ``float`` (virtual)."""
    if isinstance(now, (int, float)):
        return float(now)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return float((now - _EPOCH).total_seconds())


_EPOCH = datetime.fromtimestamp(0, timezone.utc)

__all__ = ["rate"]
