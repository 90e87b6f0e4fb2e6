"""The ``client.events()`` preset as one operator: typed, heartbeat, resume and end, fused.

Why it exists: composed, ``typed -> heartbeat_timeout -> resume -> until_end`` costs every
event a chain of Rx observers, locks and checks that on a busy stream weighs more than decoding
it. :func:`events_preset` runs the same steps in one observer (:func:`rxlens.sse.fused_resume`),
fed a whole read chunk's frames at a time by the SSE sources. The composed operators remain the
public ones and the reference: a property test holds this preset equal to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc

from rxlens._event_decoding import _DECODERS
from rxlens._json import scan_once
from rxlens.errors import MalformedEventError
from rxlens.events import LensEvent, OnMalformed, StreamEnd, parse_event
from rxlens.operators._typed import _clock
from rxlens.retry import RetryPolicy
from rxlens.sse import Cursor, Event, StateCallback, fused_resume

_T = TypeVar("_T")
_U = TypeVar("_U")


class Narrowable(Observable[_T]):
    """An Observable that can pass only the items of one type by itself.

    Why it exists: ``client.events(sid).pipe(only_results())`` is the most common pipeline,
    and a filter after the preset costs every event two more Rx observers. The preset's
    Observable is a ``Narrowable``: :func:`rxlens.operators.only_results` applied to it asks
    for :meth:`narrowed` instead, which filters inside the preset's own loop. The same items,
    errors and completion as the filter after it (a property test holds them equal).
    """

    def __init__(self, build: Callable[[type[Any] | None], Observable[_T]]) -> None:
        # ``build(None)``: every item; ``build(cls)``: only the items of ``cls``.
        self._build = build
        super().__init__(build(None)._subscribe_core)

    def narrowed(self, cls: type[_U]) -> Observable[_U]:
        """This Observable with only the items of type ``cls`` (the rest dropped)."""
        narrowed: Observable[Any] = self._build(cls)
        return narrowed


def events_preset(
    *,
    heartbeat_timeout: float | None = 15.0,
    policy: RetryPolicy | None = None,
    cursor: Cursor | None = None,
    remember: int | None = None,
    remember_bytes: int | None = None,
    on_malformed: OnMalformed = "emit",
    on_unidentified: Callable[[LensEvent], None] | None = None,
    on_state: StateCallback | None = None,
    heartbeat_scheduler: abc.SchedulerBase | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Narrowable[LensEvent]]:
    """``typed(on_malformed, on_unidentified=...)`` -> ``heartbeat_timeout(heartbeat_timeout,
    heartbeat_scheduler)`` -> ``resume(policy, cursor=..., remember=..., remember_bytes=...,
    on_state=..., scheduler=...)`` ->
    ``until_end()``, as one operator (``heartbeat_timeout=None`` leaves the heartbeat out;
    ``remember`` and ``remember_bytes`` default to ``resume``'s).

    Same events, errors, states, notes and times as the four composed; see each of them for
    the rules. Frames from an :class:`rxlens.sse.SSESource` or
    :class:`rxlens.sse.AsyncSSESource` arrive a read chunk at a time, and the preset moves
    the source's cursor frame by frame as the source would. ``only_results()`` applied to
    the result filters inside the preset (:class:`Narrowable`).

    Marble (``r`` result, ``x`` a drop, policy delay 2, ``e`` the end)::

        upstream 1st:     -r-r-x
        upstream 2nd:             -r-e-
        events_preset():  -r-r--------r-(e|)

    Raises:
        ValueError: ``heartbeat_timeout`` is not positive, or ``on_malformed`` is not a
            policy.
    """
    if on_malformed not in ("emit", "raise", "skip"):
        raise ValueError(f"on_malformed must be 'emit', 'raise' or 'skip', not {on_malformed!r}")

    def step(sub_scheduler: abc.SchedulerBase | None) -> Callable[[Event], LensEvent | None]:
        return _frame_step(on_malformed, on_unidentified, sub_scheduler)

    memory = {}
    if remember is not None:
        memory["remember"] = remember
    if remember_bytes is not None:
        memory["remember_bytes"] = remember_bytes

    def build(only: type[Any] | None) -> Callable[[Observable[Event]], Observable[LensEvent]]:
        return fused_resume(
            step,
            step_errors=(MalformedEventError,),
            seconds=heartbeat_timeout,
            heartbeat_scheduler=heartbeat_scheduler,
            end_type=StreamEnd,
            only=only,
            policy=policy,
            cursor=cursor,
            **memory,
            on_state=on_state,
            scheduler=scheduler,
        )

    whole = build(None)  # refuses bad arguments here, not at the first subscription

    def operator(source: Observable[Event]) -> Narrowable[LensEvent]:
        # only_results() after the preset filters inside it (Narrowable).
        return Narrowable(lambda only: whole(source) if only is None else build(only)(source))

    return operator


def _frame_step(
    on_malformed: OnMalformed,
    unidentified: Callable[[LensEvent], None] | None,
    scheduler: abc.SchedulerBase | None,
) -> Callable[[Event], LensEvent | None]:
    """``typed``'s step for one subscription on ``scheduler`` (the same event, or ``None``, or
    :class:`~rxlens.errors.MalformedEventError`), with :func:`rxlens.events.parse_event`'s
    common case inlined.

    That case is a frame whose data the stdlib's C scanner reads whole into a dict of a known
    type that the type's structural check accepts: exactly the calls ``parse_event`` makes
    for it, without its layers of calls. Anything else (a scan that fails or stops short, an
    unknown, log or malformed event, a payload the check leaves to marshmallow) goes to
    ``parse_event`` itself, with the same arrival time, so it decides and words the errors.
    """
    clock = _clock(scheduler)
    scan = scan_once
    decoders = _DECODERS

    def step(frame: Event) -> LensEvent | None:
        when = clock()
        raw = frame[0]
        event_id = frame[3] or None
        if scan is not None and raw.__class__ is str:
            try:
                payload, end = scan(raw, 0)
            except Exception:  # StopIteration, JSONDecodeError, RecursionError: parse_event's
                pass
            else:
                if end == len(raw) and type(payload) is dict:
                    lens_type = payload.get("type")
                    if type(lens_type) is str:
                        decode = decoders.get(lens_type)
                        if decode is not None:
                            event = decode(payload.get("event_data"), event_id, when, raw)
                            if event is not None:
                                if event_id is None and unidentified is not None:
                                    unidentified(event)
                                return event
        found = parse_event(frame, received_at=when, on_malformed=on_malformed)
        if found is not None and unidentified is not None and found.id is None:
            unidentified(found)
        return found

    return step
