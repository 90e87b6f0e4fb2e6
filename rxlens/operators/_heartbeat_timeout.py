"""``heartbeat_timeout``: fail a stream that has gone silent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable
from reactivex.scheduler import VirtualTimeScheduler

from rxlens._timers import RETRY_HAND_OFF, SharedTimers, off_timer_thread, shared_timers
from rxlens.errors import HeartbeatTimeout, MalformedEventError
from rxlens.events import LensEvent, OnMalformed
from rxlens.operators._typed import _step
from rxlens.sse import Event

_T = TypeVar("_T")


def heartbeat_timeout(
    seconds: float, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Fail with :class:`~rxlens.errors.HeartbeatTimeout` when no item arrives for ``seconds``.

    The Lens server sends a heartbeat every ~5 s while no result flows, so a stream silent for
    much longer is dead even if its socket looks open. Every item restarts the timer, whatever
    it is: heartbeats are the point, which is why this goes before ``only_results`` (which
    drops them). The first timer starts at subscription. The error carries ``seconds`` and
    ``last_frame_at``, the scheduler time (epoch seconds) of the last item, or of the
    subscription when none came. On timeout the source is disposed (closing the connection),
    so a ``resume``/``retry`` downstream reconnects cleanly.

    Works on any Observable. Time comes from ``scheduler``, else the subscription's scheduler,
    else one timer thread shared by every subscription in the process
    (:class:`rxlens._timers.SharedTimers`, so a thousand sessions do not hold a thousand timer
    threads). That thread only decides: the timeout itself (the subscriber's ``on_error``) is
    delivered on a short-lived thread of its own, so a subscriber that blocks in a callback
    delays no other subscription's timeout. A lock per subscription serialises items and the
    timeout, so an item arriving as the timer fires is either delivered (and the timer
    re-armed) or dropped after the error, never both; the timer is disposed on completion,
    error and disposal.

    Marble diagram (``heartbeat_timeout(3)``; one character is one second; ``h`` heartbeat,
    ``r`` result)::

        source:                -h-r--h-----
        heartbeat_timeout(3):  -h-r--h--#
            (source subscription: ^--------!)

    Raises:
        ValueError: ``seconds`` is not positive.
    """
    return _heartbeat_timeout(seconds, scheduler, None)


def typed_heartbeat_timeout(
    seconds: float,
    *,
    on_malformed: OnMalformed = "emit",
    on_unidentified: Callable[[LensEvent], None] | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Observable[LensEvent]]:
    """``typed(on_malformed, on_unidentified=...)`` then ``heartbeat_timeout(seconds)``, fused.

    The same items, errors and times as the two operators composed (a property test holds
    them equal), at the cost of one observer and one lock per frame instead of two of each:
    the hot path of :meth:`rxlens.LensClient.events`.

    Raises:
        ValueError: ``seconds`` is not positive, or ``on_malformed`` is not a policy.
    """
    if on_malformed not in ("emit", "raise", "skip"):
        raise ValueError(f"on_malformed must be 'emit', 'raise' or 'skip', not {on_malformed!r}")
    return _typed_heartbeat_timeout(seconds, scheduler, on_malformed, on_unidentified)


def _typed_heartbeat_timeout(
    seconds: float,
    scheduler: abc.SchedulerBase | None,
    on_malformed: OnMalformed,
    unidentified: Callable[[LensEvent], None] | None = None,
) -> Callable[[Observable[Event]], Observable[LensEvent]]:
    """``_typed(on_malformed, unidentified)`` then ``heartbeat_timeout(seconds, scheduler)``,
    as one observer: the frame is decoded under the heartbeat's lock, so each frame costs one
    observer and one lock instead of two of each. What gets through and when is the composed
    pair's (a property test holds them equal): a frame skipped as malformed re-arms nothing,
    and ``"raise"`` fails the stream, disposing the timer and then the source.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")

    def steps(sub_scheduler: abc.SchedulerBase | None) -> Callable[[Any], Any]:
        return _step(on_malformed, unidentified, sub_scheduler)

    return _heartbeat_timeout(seconds, scheduler, steps)


def _heartbeat_timeout(
    seconds: float,
    scheduler: abc.SchedulerBase | None,
    steps: Callable[[abc.SchedulerBase | None], Callable[[Any], Any]] | None,
) -> Callable[[Observable[Any]], Observable[Any]]:
    """``heartbeat_timeout``; with ``steps``, each item first goes through the function that
    ``steps(subscription's scheduler)`` gives (``None`` drops the item without re-arming,
    :class:`MalformedEventError` fails the stream)."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            step = steps(sub_scheduler) if steps is not None else None
            sched = scheduler or sub_scheduler or shared_timers()
            # Virtual-time schedulers are their own clock; a real scheduler's clock is the wall
            # clock, read here as time.monotonic, which is much cheaper per item.
            clock: Callable[[], float] = (
                (lambda: _seconds(sched))
                if isinstance(sched, VirtualTimeScheduler)
                else time.monotonic
            )
            # Re-entrant: an observer may synchronously dispose or push while we emit.
            lock = threading.RLock()
            timer = SerialDisposable()
            subscription = SingleAssignmentDisposable()
            stopped = False
            last = clock()

            # One pending timer at a time. Items only record their arrival; when the timer
            # fires it compares the silence so far with ``seconds`` and, if an item came
            # meanwhile, schedules itself again for the remainder. Re-arming per item would
            # cost a timer for every event.
            def arm(delay: float) -> None:
                timer.disposable = sched.schedule_relative(delay, fire)

            # On the shared timer thread, fire must not wait for this subscription's lock (a
            # slow on_next holds it) nor run its on_error: it re-arms if an item came, and hands
            # the timeout itself to a thread of its own, where expire checks again under the lock.
            shared = isinstance(sched, SharedTimers)

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                if not shared:
                    expire()
                    return
                if stopped:
                    return
                remaining = seconds - (clock() - last)
                if remaining > 1e-9:
                    arm(remaining)
                    return
                if not off_timer_thread(expire):
                    arm(min(seconds, RETRY_HAND_OFF))  # late, never lost

            def expire() -> None:
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    now = clock()
                    remaining = seconds - (now - last)
                    if remaining > 1e-9:
                        arm(remaining)
                        return
                    stopped = True
                    observer.on_error(HeartbeatTimeout(seconds, _seconds(sched) - (now - last)))
                subscription.dispose()

            def on_next(item: Any) -> None:
                nonlocal last, stopped
                with lock:
                    if stopped:
                        return
                    if step is not None:
                        try:
                            item = step(item)
                        except MalformedEventError as error:
                            stopped = True
                            timer.dispose()
                            observer.on_error(error)
                            subscription.dispose()
                            return
                        if item is None:
                            return
                    # The silence is measured from the item's arrival, not from when a slow
                    # subscriber finished with it.
                    last = clock()
                    observer.on_next(item)

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

            with lock:
                arm(seconds)
            subscription.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=sub_scheduler
            )
            return CompositeDisposable(subscription, timer)

        return Observable(subscribe)

    return operator


def _seconds(scheduler: abc.SchedulerBase) -> float:
    return float(scheduler.to_seconds(scheduler.now))
