"""``typed``: raw server-sent events in, typed Lens events out."""

from __future__ import annotations

import time
from collections.abc import Callable

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from rxlens.errors import MalformedEventError
from rxlens.events import LensEvent, OnMalformed, parse_event
from rxlens.sse import Event


def typed(
    on_malformed: OnMalformed = "emit",
    *,
    on_unidentified: Callable[[LensEvent], None] | None = None,
) -> Callable[[Observable[Event]], Observable[LensEvent]]:
    """Decode each :class:`rxlens.sse.Event` into its :class:`~rxlens.events.LensEvent`.

    ``received_at`` is stamped on arrival: the clock of the scheduler given at subscription
    when there is one (a ``TestScheduler``'s virtual time, so tests are exact), else
    ``time.time()``. A frame that is not a valid Lens event is handled per ``on_malformed``:

    - ``"emit"`` (default): a :class:`~rxlens.events.MalformedEvent` goes downstream;
    - ``"raise"``: the stream fails with :class:`~rxlens.errors.MalformedEventError` and the
      source is disposed;
    - ``"skip"``: the frame is dropped with a warning on the ``rxlens.events`` logger.

    ``on_unidentified`` is called with every event whose frame carried no ``id:`` (how the
    client learns that a server sends no ids).

    Marble diagrams (``j`` a valid frame, ``x`` a bad one; ``J``/``M`` their events)::

        source:                        -j-x-j-|
        typed():                       -J-M-J-|
        typed(on_malformed="skip"):    -J---J-|
        typed(on_malformed="raise"):   -J-#
            (source subscription:      ^--!)

    Raises:
        ValueError: ``on_malformed`` is not one of the three policies.
    """
    if on_malformed not in ("emit", "raise", "skip"):
        raise ValueError(f"on_malformed must be 'emit', 'raise' or 'skip', not {on_malformed!r}")

    return _typed(on_malformed, on_unidentified)


def _typed(
    on_malformed: OnMalformed, unidentified: Callable[[LensEvent], None] | None = None
) -> Callable[[Observable[Event]], Observable[LensEvent]]:
    """``typed``, plus a hook called with every event whose frame carried no ``id:``."""

    def operator(source: Observable[Event]) -> Observable[LensEvent]:
        def subscribe(
            observer: abc.ObserverBase[LensEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            step = _step(on_malformed, unidentified, scheduler)
            subscription = SingleAssignmentDisposable()

            def on_next(frame: Event) -> None:
                try:
                    event = step(frame)
                except MalformedEventError as error:
                    # The subscriber's auto-detaching observer ignores anything after this.
                    observer.on_error(error)
                    subscription.dispose()
                    return
                if event is not None:
                    observer.on_next(event)

            subscription.disposable = source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )
            return subscription

        return Observable(subscribe)

    return operator


def _step(
    on_malformed: OnMalformed,
    unidentified: Callable[[LensEvent], None] | None,
    scheduler: abc.SchedulerBase | None,
) -> Callable[[Event], LensEvent | None]:
    """One frame to its event (``None`` when skipped), as ``typed`` does it for a subscription
    on ``scheduler``; raises :class:`MalformedEventError` under ``"raise"``. Shared with the
    fused preset (:func:`rxlens.operators._heartbeat_timeout._typed_heartbeat_timeout`)."""
    clock = _clock(scheduler)

    def step(frame: Event) -> LensEvent | None:
        event = parse_event(frame, received_at=clock(), on_malformed=on_malformed)
        if event is not None and unidentified is not None and event.id is None:
            unidentified(event)
        return event

    return step


def _clock(scheduler: abc.SchedulerBase | None) -> Callable[[], float]:
    """Epoch seconds now: the scheduler's clock when one was given, else ``time.time``."""
    if scheduler is None:
        return time.time
    sch = scheduler

    def now() -> float:
        return float(sch.to_seconds(sch.now))

    return now
