"""``merge_sessions``: one stream from several Lens sessions, each event tagged with its session."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SingleAssignmentDisposable

from rxlens.events import LensEvent

#: The ``type`` of a :class:`SessionFailed` event (an rxlens type, not a Lens one).
SESSION_FAILED = "rxlens.session.failed"


@dataclass(frozen=True, slots=True)
class SessionFailed(LensEvent):
    """In a merged stream: the session ``session_id`` failed with ``error`` and has ended.

    Emitted by :func:`merge_sessions` in place of the session's ``on_error``, so that one
    failing session never ends the others and is never silent. ``event_data`` holds the error's
    type name and message, so a recording keeps the failure (``rxlens.replay`` rebuilds it, with
    ``error`` a :class:`RecordedSessionError`). It has no ``label`` or ``text``, so the
    aggregates skip it.
    """

    type: str = field(default=SESSION_FAILED, init=False)
    error: BaseException | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.event_data is None and self.error is not None:
            data = {"error_type": type(self.error).__name__, "message": str(self.error)}
            object.__setattr__(self, "event_data", data)
        if not self.raw:
            # The frame this event would have been: lets a recording store it like any other.
            envelope = {"type": self.type, "event_data": self.event_data}
            object.__setattr__(self, "raw", json.dumps(envelope, separators=(",", ":")))


class RecordedSessionError(Exception):
    """A session failure read back from a recording: only its type name and message survive."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        self.message = message
        super().__init__(f"{error_type}: {message}")


def tag_session(event: LensEvent, session_id: str) -> LensEvent:
    """``event`` with ``session_id`` set (the same object when it already has that id)."""
    if event.session_id == session_id:
        return event
    return dataclasses.replace(event, session_id=session_id)


def merge_sessions(
    sources: Mapping[str, Observable[LensEvent]],
    *,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[LensEvent]:
    """Merge several sessions' event streams, tagging each event with its session id.

    ``sources`` maps a session id to that session's stream (read once, at call time). Every
    event is re-emitted with ``session_id`` set to its key (via :func:`dataclasses.replace`).
    When one session's stream errors, the merged stream emits a :class:`SessionFailed` event
    for it (the error is never silent, and never on a side channel) and goes on with the
    others. The merged stream completes when every session has completed or failed, at once
    when ``sources`` is empty. A slow session delays none of the others: each is subscribed on
    its own and emits on its own thread; one lock per subscription serialises the emissions so
    downstream never sees two at once. Within one session the order is kept; across sessions
    events interleave in arrival order. ``scheduler`` is passed to each source's
    ``subscribe``.

    Marble diagram::

        "s1":               -a---b---|
        "s2":               ---c--#          (# is an error e)
        merge_sessions():   -a-c-bF--|       a, b tagged "s1"; c tagged "s2";
                                             F = SessionFailed(session_id="s2", error=e)

    An item that is not a Lens event (no ``session_id`` dataclass field) fails its session the
    same way, with a ``TypeError``.
    """
    pairs = list(sources.items())

    def subscribe(
        observer: abc.ObserverBase[LensEvent], sub_scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        lock = threading.RLock()
        remaining = len(pairs)
        ended: set[str] = set()
        group = CompositeDisposable()

        def finish(session_id: str) -> None:
            nonlocal remaining
            ended.add(session_id)
            remaining -= 1
            if remaining == 0:
                observer.on_completed()

        def fail(session_id: str, error: BaseException, link: SingleAssignmentDisposable) -> None:
            with lock:
                if session_id in ended:
                    return
                observer.on_next(SessionFailed(session_id=session_id, error=error))
                finish(session_id)
            link.dispose()

        def watch(session_id: str, source: Observable[LensEvent]) -> None:
            link = SingleAssignmentDisposable()
            group.add(link)

            def on_next(event: Any) -> None:
                try:
                    tagged = tag_session(event, session_id)
                except (TypeError, AttributeError) as error:
                    fail(session_id, TypeError(f"not a Lens event: {event!r:.200}: {error}"), link)
                    return
                with lock:
                    if session_id not in ended:
                        observer.on_next(tagged)

            def on_error(error: Exception) -> None:
                fail(session_id, error, link)

            def on_completed() -> None:
                with lock:
                    if session_id not in ended:
                        finish(session_id)

            link.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler or sub_scheduler
            )

        if not pairs:
            observer.on_completed()
        for session_id, source in pairs:
            watch(session_id, source)
        return group

    return Observable(subscribe)


__all__ = [
    "SESSION_FAILED",
    "RecordedSessionError",
    "SessionFailed",
    "merge_sessions",
    "tag_session",
]
