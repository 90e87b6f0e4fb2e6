"""Interop: an existing sseclient-py ``SSEClient`` as an Observable of :class:`Event`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxlens.errors import StreamClosed, TransportError, mark_downstream
from rxlens.sse._models import Event

log = logging.getLogger("rxlens.sse")


def from_sseclient(client: Any) -> Observable[Event]:
    """Wrap an sseclient-py ``SSEClient`` as an Observable of :class:`Event`.

    For code that already holds an ``SSEClient``. Events get the same type as
    :func:`rxlens.sse.connect` produces, with the last event id kept across events (sseclient-py
    itself forgets it). The wrapped client is read on a daemon thread; disposing the subscription
    closes the client.

    There is **no resume**: sseclient-py owns the connection, it has no way to reconnect, and it
    dispatches a half-received event when the connection drops, so a resumed stream could skip
    events. For a resumable stream use :func:`rxlens.sse.stream`. The end of the stream is
    ``on_error(StreamClosed)``, as with ``connect``. Subscribe once: the client is consumed.
    """

    def subscribe(
        observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        stopped = threading.Event()

        def run() -> None:
            last_id = ""
            try:
                iterator = iter(client.events())
                while True:
                    try:
                        raw = next(iterator)
                    except StopIteration:
                        break
                    if stopped.is_set():
                        return
                    own_id = raw.id
                    if own_id is not None and "\x00" not in own_id:
                        last_id = own_id
                    event = Event(raw.data, raw.event or "message", last_id, own_id)
                    try:
                        observer.on_next(event)
                    except Exception as exc:
                        observer.on_error(mark_downstream(exc))
                        return
            except Exception as exc:
                if not stopped.is_set():
                    observer.on_error(TransportError(f"sseclient stream failed: {exc!r}"))
                return
            if not stopped.is_set():
                observer.on_error(StreamClosed("the sseclient stream ended"))

        def dispose() -> None:
            stopped.set()
            try:
                client.close()
            except Exception as exc:  # closing twice or a broken stream: nothing to recover
                log.debug("closing SSEClient: %s", type(exc).__name__)

        threading.Thread(target=run, name="rxlens-sseclient", daemon=True).start()
        return Disposable(dispose)

    return Observable(subscribe)
