"""Handing one read chunk's events to a subscriber: one ``on_next`` each, or the whole list.

Why it exists: a read chunk of a busy stream holds hundreds of frames, and every frame that
crosses an Rx observer costs a call, a stop check and a lock. The SSE sources (threads and
asyncio) therefore deliver a chunk through :func:`deliver`: an ordinary subscriber gets one
``on_next`` per frame, as before; a :class:`FrameObserver` (the ``client.events()`` preset)
gets the chunk's frames as one list and walks them itself. One function serves both sources so
that their delivery cannot drift apart.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Protocol

from reactivex import abc
from reactivex.observer.autodetachobserver import AutoDetachObserver

from rxlens.errors import RxLensError, StreamClosed, is_downstream, mark_downstream
from rxlens.sse._models import Event


class Cursor(Protocol):
    """What a delivery advances: the source's ``last_event_id``."""

    last_event_id: str


class FrameObserver(abc.ObserverBase[Event]):
    """An observer that takes a read chunk's frames at once (:meth:`on_frames`).

    The internal protocol between the SSE sources and the fused preset. The observer owns the
    per-frame work a source does for an ordinary subscriber: for each frame, in order, it stops
    when it was disposed, sets the source's ``last_event_id`` to the frame's
    ``last_event_id``, then handles the frame. An exception it raises is the subscriber's own
    (marked, never retried), as from ``on_next``.
    """

    @abstractmethod
    def on_frames(self, frames: Sequence[Event]) -> bool:
        """Handle one read chunk's frames, in order; return True when it was disposed with
        frames left (where a source's own loop would have stopped)."""

    def on_connecting(self) -> None:
        """The source is opening the connection (it may wait in its own queue first)."""

    def on_open(self) -> None:
        """The connection's response head arrived and was accepted: frames may come now."""


def deliver(
    events: Sequence[Event],
    observer: abc.ObserverBase[Event],
    cursor: Cursor,
    stopped: Callable[[], bool],
) -> Exception | None:
    """Deliver one read chunk's events; return why the stream must end, or None.

    An ordinary observer gets one ``on_next`` per event, after ``cursor.last_event_id`` is set
    to that event's; delivery stops (``StreamClosed("disposed")``) once ``stopped()`` says the
    subscription was disposed. A :class:`FrameObserver` gets the whole list in one
    :meth:`~FrameObserver.on_frames` (it does the same per-frame work itself). An exception
    raised by the subscriber comes back marked with :func:`rxlens.errors.mark_downstream`.
    """
    try:
        if isinstance(observer, FrameObserver):
            if events and observer.on_frames(events):
                return StreamClosed("disposed")
            return None
        if observer.__class__ is AutoDetachObserver:
            # What ``subscribe()`` wraps around a subscriber: its ``on_next`` only checks the
            # wrapper's ``is_stopped`` before calling the subscriber's own function, so that
            # check is made here and the function called directly (a call less per event).
            detached = observer
            call = observer._on_next
            for event in events:
                if stopped():
                    return StreamClosed("disposed")
                cursor.last_event_id = event[2]
                if not detached.is_stopped:
                    call(event)
            return None
        on_next = observer.on_next
        for event in events:
            if stopped():
                return StreamClosed("disposed")
            cursor.last_event_id = event[2]
            on_next(event)
    except Exception as exc:
        return mark_downstream(exc)
    return None


def finish(
    observer: abc.ObserverBase[Event],
    error: Exception | None,
    retry_ms: int | None,
    closed: Callable[[], None],
) -> None:
    """Tell the subscriber how a connection ended (the last step of both sources' runs).

    ``None`` (the server answered 204) is ``closed()`` (the "closed" state), then
    ``on_completed``; an error is ``on_error``, with the stream's last ``retry:`` hint
    (``retry_ms``) set on a library error that carries none, never on the subscriber's own
    exception. Raises only what the subscriber's callbacks raise.
    """
    if error is None:
        closed()
        observer.on_completed()
        return
    if isinstance(error, RxLensError) and not is_downstream(error) and error.retry_ms is None:
        error.retry_ms = retry_ms
    observer.on_error(error)
