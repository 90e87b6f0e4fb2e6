"""``connect``: one SSE connection per subscription, as a cold Observable that keeps a cursor."""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxlens.errors import (
    ClientClosed,
    EventTooLarge,
    LocalError,
    RxLensError,
    StreamClosed,
    TransportError,
    UnsendableEventId,
)
from rxlens.sse._closing import Closer, registered
from rxlens.sse._decoder import _DEFAULT_MAX_EVENT_BYTES, Decoder
from rxlens.sse._delivery import FrameObserver, deliver, finish
from rxlens.sse._models import Event
from rxlens.sse._state import ConnectionState, StateCallback, report
from rxlens.sse._transport import (
    DEFAULT_TIMEOUT,
    Connection,
    SocketHandle,
    new_session,
    safe_url,
)

log = logging.getLogger("rxlens.sse")


#: What a failure of the network looks like below requests: anything else raised while a
#: connection runs is a local failure (a bug, a request that cannot be built), never retried.
_NETWORK_ERRORS = (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException)


def encode_event_id(event_id: str) -> bytes:
    """``event_id`` as the bytes of a ``Last-Event-ID`` header: UTF-8, as the server sent it.

    requests would encode a text header as latin-1: wrong bytes for ``é``, and an
    ``UnicodeEncodeError`` for anything outside latin-1. Raises :class:`UnsendableEventId` for
    an id no header carries unchanged.
    """
    if "\r" in event_id or "\n" in event_id or "\x00" in event_id:
        raise UnsendableEventId(event_id, "it contains CR, LF or NUL")
    if event_id[:1] in (" ", "\t", "\x0b", "\x0c"):
        raise UnsendableEventId(event_id, "HTTP strips the white space it starts with")
    try:
        return event_id.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsendableEventId(event_id, "it is not valid Unicode (a lone surrogate)") from None


def unexpected_error(exc: Exception, after_open: bool) -> RxLensError:
    """The typed error for an exception that is not an rxlens error (both I/O designs)."""
    if isinstance(exc, _NETWORK_ERRORS) and not isinstance(exc, ValueError):
        return TransportError(f"connection failed: {type(exc).__name__}: {exc}")
    if not after_open:
        # Raised while building the request: its message may quote a header (the key).
        return LocalError(
            f"cannot build the request: {type(exc).__name__} (a header or URL that HTTP "
            "cannot carry?); not retried"
        )
    error = LocalError(f"the SSE reader failed: {type(exc).__name__}: {exc}; not retried")
    error.__cause__ = exc
    return error


class SSESource(Observable[Event]):
    """A cold Observable of :class:`Event`: each subscription opens its own connection.

    The source keeps a cursor, :attr:`last_event_id`: the last event id it delivered (the
    stream's last event id, sticky across events as the spec says). Every new subscription sends
    it as ``Last-Event-ID``, which is how a retry resumes where the dropped connection stopped.

    Termination:

    - the server closes the stream: ``on_error(StreamClosed)`` (retryable; a partial event at
      the end is discarded, so it is received again after a resume);
    - a network failure: ``on_error(TransportError)`` (retryable);
    - HTTP 204: ``on_completed``; other statuses: typed errors (see :mod:`rxlens.errors`);
    - an exception raised by the subscriber's own ``on_next``: ``on_error`` with that very
      exception, marked so that :func:`rxlens.operators.resume` never retries it.

    Every error carries the server's hints: ``retry_ms`` (the ``retry:`` in force) and
    ``retry_after`` (``Retry-After``).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str = "",
        session: requests.Session | None = None,
        scheduler: abc.SchedulerBase | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_event_bytes: int = _DEFAULT_MAX_EVENT_BYTES,
        on_state: StateCallback | None = None,
        closer: Closer | None = None,
    ) -> None:
        super().__init__()
        if last_event_id:
            encode_event_id(last_event_id)  # refuse at once what could never be sent
        self.url = url
        #: The client's (see rxlens.sse._closing): its close() ends this source's connections.
        self.closer = closer
        self._headers = dict(headers or {})
        self.last_event_id = last_event_id
        #: The last valid ``retry:`` value the server sent (ms), across connections.
        self.retry_ms: int | None = None
        #: How many events this source has decoded, across connections.
        self.delivered = 0
        self._session = session
        self._own_session: requests.Session | None = None
        self._scheduler = scheduler
        self.timeouts = timeout
        self.max_event_bytes = max_event_bytes
        self.on_state = on_state
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the headers: they carry the API key.
        return f"SSESource({safe_url(self.url)!r}, last_event_id={self.last_event_id!r})"

    @property
    def session(self) -> requests.Session:
        """The ``requests.Session`` shared by every connection of this source."""
        if self._session is not None:
            return self._session
        with self._lock:
            if self._own_session is None:
                self._own_session = new_session()
            return self._own_session

    def close(self) -> None:
        """Close the session this source created for itself (not one it was given)."""
        with self._lock:
            own, self._own_session = self._own_session, None
        if own is not None:
            own.close()

    def request_headers(self) -> dict[str, str | bytes]:
        """The request's headers; raises :class:`UnsendableEventId` for a cursor it cannot send."""
        headers: dict[str, str | bytes] = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        headers.update(self._headers)
        if self.last_event_id:
            headers["Last-Event-ID"] = encode_event_id(self.last_event_id)
        return headers

    def _subscribe_core(
        self, observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        handle = SocketHandle()
        sched = self._scheduler
        if sched is not None:
            scheduled = sched.schedule(lambda _s, _st: self._run(observer, handle))
            return CompositeDisposable(scheduled, Disposable(handle.abort))
        thread = threading.Thread(
            target=self._run, args=(observer, handle), name="rxlens-sse-reader", daemon=True
        )
        thread.start()
        return Disposable(handle.abort)

    def _state(self, kind: Any, **fields: Any) -> None:
        if self.on_state is not None:
            report(
                self.on_state,
                ConnectionState(
                    kind,
                    safe_url(self.url),
                    last_event_id=self.last_event_id,
                    at=time.time(),
                    **fields,
                ),
            )

    def _run(self, observer: abc.ObserverBase[Event], handle: SocketHandle) -> None:
        # The body of the reader thread: whatever fails in the library ends the subscription
        # with a typed on_error, never the thread alone.
        with registered(self.closer, handle.close_by_client) as may_open:
            terminated = False
            try:
                if not may_open:
                    error: Exception | None = ClientClosed()  # no connection from a closed client
                else:
                    error = self._connect_and_read(observer, handle)
                    if handle.aborted:
                        self._state("closed")
                        if not handle.client_closed:
                            return  # disposed: nobody is told
                        error = ClientClosed()
                terminated = True
                finish(observer, error, self.retry_ms, lambda: self._state("closed"))
            except Exception as exc:
                if terminated:
                    # The subscriber's own on_error / on_completed raised: nobody is left to tell.
                    log.exception("a subscriber's on_error or on_completed raised (thread ends)")
                    return
                observer.on_error(unexpected_error(exc, after_open=True))

    def _connect_and_read(
        self, observer: abc.ObserverBase[Event], handle: SocketHandle
    ) -> Exception | None:
        """One connection; returns why it ended (None: the server answered 204)."""
        error: Exception | None = None
        connection: Connection | None = None
        try:
            connection = Connection(
                self.session, self.url, self.request_headers(), self.timeouts, handle
            )
            self._state("connecting")
            if isinstance(observer, FrameObserver):
                observer.on_connecting()
            log.debug(
                "connecting to %s (Last-Event-ID: %r)", safe_url(self.url), self.last_event_id
            )
            response = connection.open()
            if response is None:
                return None
            self._state("open", headers=dict(response.headers))
            if isinstance(observer, FrameObserver):
                observer.on_open()
            error = self._pump(connection, observer, handle)
        except RxLensError as exc:
            error = exc
        except Exception as exc:  # not an rxlens error: the network below requests, or a bug
            error = unexpected_error(exc, after_open=connection is not None and connection.opened)
        finally:
            if connection is not None:
                connection.close()
        return error

    def _pump(
        self, connection: Connection, observer: abc.ObserverBase[Event], handle: SocketHandle
    ) -> Exception:
        """Read, decode and deliver until the stream ends; return why it ended."""
        decoder = Decoder(self.last_event_id, self.max_event_bytes)

        def stopped() -> bool:
            return handle._aborted  # the slot, not the property: read once per event

        for chunk in connection.chunks():
            try:
                events = decoder.feed(chunk)
            except EventTooLarge as exc:
                events = exc.events
                failure: Exception | None = exc
            else:
                failure = None
            if decoder.retry is not None:
                self.retry_ms = decoder.retry
            self.delivered += len(events)
            ended = deliver(events, observer, self, stopped)
            if ended is not None:
                return ended
            if failure is not None:
                return failure
            if handle.aborted:
                return StreamClosed("disposed")
            self.last_event_id = decoder.last_event_id
        lost = decoder.pending_bytes
        mid_event = bool(lost) or decoder.in_event  # read before close() clears it
        decoder.close()
        where = "mid-event" if mid_event else "at an event boundary"
        log.debug("stream from %s ended %s", safe_url(self.url), where)
        closed = StreamClosed(
            f"the server closed the stream {where}"
            + (f" ({lost} bytes of an unfinished event discarded)" if lost else "")
        )
        closed.clean = not mid_event
        return closed


def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    last_event_id: str = "",
    session: requests.Session | None = None,
    scheduler: abc.SchedulerBase | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    max_event_bytes: int = _DEFAULT_MAX_EVENT_BYTES,
    on_state: StateCallback | None = None,
) -> SSESource:
    """One SSE connection per subscription, as a cold Observable of :class:`Event`.

    Each subscription reads on its own daemon thread (or on ``scheduler``) and never blocks the
    subscribing thread. Disposing the subscription shuts the socket down, which wakes a blocked
    read at once, so the thread ends and the connection closes even while the server is silent.

    ``headers`` are added to the request (``Authorization`` goes here; it is never logged or
    shown). ``timeout`` is ``(connect, read)`` in seconds. ``on_state`` receives
    :class:`ConnectionState` changes. See :class:`SSESource` for how the stream ends; pipe it
    through :func:`rxlens.operators.resume` (or use :func:`stream`) to reconnect.
    """
    return SSESource(
        url,
        headers=headers,
        last_event_id=last_event_id,
        session=session,
        scheduler=scheduler,
        timeout=timeout,
        max_event_bytes=max_event_bytes,
        on_state=on_state,
    )
