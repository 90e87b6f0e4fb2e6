"""``merge_sessions``: one stream from several Lens sessions, each event tagged with its session."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SingleAssignmentDisposable

from rxlens._deprecation import warn_once
from rxlens.errors import ConfigurationError, RecordedSessionError
from rxlens.events import SESSION_FAILED, LensEvent, SessionFailed, tag_session


class _SessionsClient(Protocol):
    def merge_sessions(
        self, session_ids: Iterable[str], *, scheduler: Any = ..., **events_options: Any
    ) -> Observable[LensEvent]: ...


def merge_sessions(
    sources: Mapping[str, Observable[LensEvent]] | _SessionsClient,
    session_ids: Iterable[str] | None = None,
    *,
    scheduler: abc.SchedulerBase | None = None,
    **events_options: Any,
) -> Observable[LensEvent]:
    """Merge several sessions' event streams, tagging each event with its session id.

    This is the one ``merge_sessions`` (also ``rxlens.merge_sessions``): a creation function,
    like ``reactivex.merge``. To merge sessions of a client, call
    ``client.merge_sessions(session_ids, **events_options)``, which builds
    ``{sid: client.events(sid, **events_options)}`` and calls this. The previous form,
    ``merge_sessions(client, session_ids, ...)``, still works for one release, with a
    ``DeprecationWarning``.

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
    if not isinstance(sources, Mapping):
        if not hasattr(sources, "merge_sessions"):
            raise TypeError(
                f"merge_sessions takes a mapping of session id to Observable, got "
                f"{type(sources).__name__}"
            )
        warn_once(
            "rxlens.merge_sessions(client, session_ids)",
            "client.merge_sessions(session_ids)",
        )
        if session_ids is None:
            raise ConfigurationError("client.merge_sessions(session_ids): name the sessions")
        return sources.merge_sessions(session_ids, scheduler=scheduler, **events_options)
    if session_ids is not None or events_options:
        raise ConfigurationError(
            "merge_sessions(mapping) takes no session ids or events options: those are "
            "client.merge_sessions(session_ids, **events_options)"
        )
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


# SessionFailed, SESSION_FAILED and tag_session live with the event types (rxlens.events),
# RecordedSessionError with the errors; still importable from here for code that did so.
__all__ = [
    "SESSION_FAILED",
    "RecordedSessionError",
    "SessionFailed",
    "merge_sessions",
    "tag_session",
]
