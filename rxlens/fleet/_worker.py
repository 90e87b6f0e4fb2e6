"""One worker of a fleet: a process that reads many sessions and commits what they deliver.

It keeps nothing that matters in memory. Everything it needs to start (which sessions are its,
and where each stopped) is read from the store in ``__init__``, so when Ray restarts it after a
crash (``max_restarts``), the new instance resumes every session from its committed cursor with
``Last-Event-ID``, and the server's resume is what makes the restart lose and repeat nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from reactivex import Observable
from reactivex import operators as ops
from reactivex.disposable import Disposable

from rxlens._format import CONTROL_TYPES
from rxlens.client import LensClient
from rxlens.events import LensEvent
from rxlens.fleet._store import CursorStore, Record
from rxlens.recording import encode_record

log = logging.getLogger("rxlens.fleet")

Pipeline = Callable[[Observable[LensEvent]], Observable[Any]]

def is_control(item: Any) -> bool:
    """Frames about the connection, not the session's data: never committed by the default
    pipeline, and never counted against the guarantee (servers send them without ids)."""
    return isinstance(item, LensEvent) and item.type in CONTROL_TYPES


def data_only(events: Observable[LensEvent]) -> Observable[LensEvent]:
    """The default pipeline: every event but the connection's control frames."""
    return events.pipe(ops.filter(lambda event: not is_control(event)))


class Secret:
    """The API key on its way to a worker: pickled with the actor's arguments, never shown.

    Ray shows an actor's arguments nowhere, but a repr can end up in a log line or a traceback:
    this one never holds the key.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value

    def reveal(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<set>)" if self._value else "Secret(<missing>)"

    def __getstate__(self) -> str | None:
        return self._value

    def __setstate__(self, state: str | None) -> None:
        self._value = state


def encode_item(item: Any) -> str:
    """The JSON a store keeps for one pipeline output: a Lens event as a recording record."""
    if isinstance(item, LensEvent):
        return encode_record(item)
    return json.dumps(item, default=repr, separators=(",", ":"))


class FleetWorker:
    """Reads the sessions the store assigns to worker ``index``; commits every output.

    ``pipeline`` turns a session's events into what is committed (default: every event but
    the connection's control frames: stream start and end, heartbeats). Each
    output is committed with its event id as the session's new cursor, in one transaction. An
    output without an id (the server sends none, or the pipeline makes new values) is still
    committed, and the session's guarantee becomes at-least-once, with a note: the fleet never
    claims more than it can keep.
    """

    def __init__(
        self,
        index: int,
        store: CursorStore,
        pipeline: Pipeline | None,
        client_options: Mapping[str, Any],
        secret: Secret,
        events_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.index = index
        self.store = store
        self.pipeline = pipeline
        self.events_options = dict(events_options or {})
        self.client = LensClient(api_key=secret.reveal(), **client_options)
        self._subscriptions: dict[str, Disposable | Any] = {}
        self._lock = threading.Lock()
        for session_id in store.assigned(index):
            self.start(session_id)

    def pid(self) -> int:
        return os.getpid()

    def sessions(self) -> list[str]:
        with self._lock:
            return sorted(self._subscriptions)

    def start(self, session_id: str) -> None:
        """Read ``session_id`` from its committed cursor (the store must assign it here)."""
        with self._lock:
            if session_id in self._subscriptions:
                return
        cursor = self.store.started(session_id)
        events = self.client.events(
            session_id, last_event_id=cursor or None, **self.events_options
        )
        outputs = (self.pipeline or data_only)(events)
        store = self.store
        unidentified = threading.Event()

        def on_next(item: Any) -> None:
            event_id = getattr(item, "id", None)
            if event_id is None and not unidentified.is_set() and not is_control(item):
                unidentified.set()
                store.mark(
                    session_id,
                    guarantee="at-least-once",
                    note="outputs without event ids: a restart may repeat or miss some",
                )
            store.commit(session_id, [Record(event_id, encode_item(item))], event_id)

        def on_error(error: Exception) -> None:
            log.warning("session %s failed: %s", session_id, type(error).__name__)
            store.mark(session_id, state="failed", note=f"{type(error).__name__}: {error}"[:300])
            self._forget(session_id)

        def on_completed() -> None:
            store.mark(session_id, state="completed")
            self._forget(session_id)

        subscription = outputs.subscribe(on_next, on_error, on_completed)
        with self._lock:
            self._subscriptions.setdefault(session_id, subscription)

    def _forget(self, session_id: str) -> None:
        with self._lock:
            self._subscriptions.pop(session_id, None)

    def stop(self) -> int:
        """Dispose every reader (the sessions keep their cursors for a later run)."""
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            subscription.dispose()
        self.client.close()
        return len(subscriptions)
