"""The ``session.read`` mailbox: a session's outputs over its WebSocket, as a cold Observable.

A Lens session writes its outputs to one of two channels, never both: the SSE consumer
(:mod:`rxlens.sse`) or a mailbox that a client drains by sending ``session.read`` over the
WebSocket at the session's ``session_endpoint``. The mailbox has no event ids, no server push, no
heartbeats and no end-of-stream event, and the shape of its replies differs between the sources
we know of. This module turns it into the same thing the SSE source is, so that everything above
(typed events, :func:`rxlens.operators.resume`, recordings) works unchanged:

- every message becomes an SSE-layer :class:`~rxlens.sse.Event` whose ``data`` is the message's
  JSON envelope, decoded later by the same parser as an SSE frame;
- ids are made up here: the message's 1-based position in this ``client_id``'s stream, written
  ``"<client_id>:<position>"``; a cursor of that form resumes the same ``client_id``, expecting
  the next position (the server keeps one read position per client id);
- polling re-polls at once while messages flow and backs off when idle (:class:`PollPolicy`);
- the session's end (status ``DESTROYED``/``FAILED``, asked now and then on the same socket) is
  drained and then completes the stream.

What no client can know: whether a batch the server had already taken off the mailbox was lost
when the socket died before its reply arrived. Such a loss is reported (a state note and one
warning) by default, or recovered with ``on_lost="replay"``: the next connection reads under a
fresh ``client_id`` from the start of what the server retains and skips what was delivered.

``websockets`` (its synchronous client) is imported when a subscription starts.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxlens.errors import (
    AuthenticationError,
    ClientClosed,
    ConfigurationError,
    DecodeError,
    HTTPStatusError,
    MailboxError,
    NotFound,
    ReadTimeout,
    RxLensError,
    TransportError,
)
from rxlens.sse import Closer, ConnectionState, Event, StateCallback, registered

log = logging.getLogger("rxlens.mailbox")

OnLost = Literal["warn", "replay"]

#: Statuses after which a session writes no more (the end of the mailbox stream).
ENDED_STATUSES = ("DESTROYED", "FAILED")

#: The largest reply accepted (bytes); the SSE layer's per-event cap, times a batch.
MAX_REPLY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class PollPolicy:
    """How often to ask the mailbox: at once while it has messages, slower while it is empty.

    After ``n`` empty replies in a row the next ``session.read`` waits
    ``min(max_interval, min_interval * multiplier ** (n - 1))``, give or take ``jitter`` (a
    fraction, drawn uniformly and never beyond ``max_interval``); a reply with messages resets it
    to zero. The idle request rate of one session is about ``1 / max_interval`` per second, so at
    1,000 sessions the default costs about 1,000 requests per second: raise ``max_interval`` for
    large fleets.

    ``status_every``: ask ``session.status`` after this many reads (and after every fifth empty
    read in a row), to learn that the session ended. ``reply_timeout``: how long one request may
    wait for its reply before the connection is taken as dead (retryable).

    >>> policy = PollPolicy(jitter=0.0)
    >>> [policy.delay(n) for n in range(6)]
    [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    """

    min_interval: float = 0.1
    max_interval: float = 1.0
    multiplier: float = 2.0
    jitter: float = 0.2
    status_every: int = 10
    reply_timeout: float = 30.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ConfigurationError("PollPolicy needs 0 < min_interval <= max_interval")
        if self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ConfigurationError("PollPolicy needs multiplier >= 1 and 0 <= jitter < 1")
        if self.status_every < 1 or self.reply_timeout <= 0:
            raise ConfigurationError("PollPolicy needs status_every >= 1 and reply_timeout > 0")

    def delay(self, empty_streak: int, draw: float = 0.5) -> float:
        """Seconds to wait before the next read after ``empty_streak`` empty replies in a row.

        ``draw`` is a uniform number in ``[0, 1)`` (0.5 means no jitter): the policy is pure.
        """
        if empty_streak <= 0:
            return 0.0
        # The exponent is capped so a long idle stretch never overflows a float.
        step = self.min_interval * self.multiplier ** min(empty_streak - 1, 64)
        base = min(self.max_interval, step)
        return min(self.max_interval, max(0.0, base * (1 + self.jitter * (2 * draw - 1))))

    def wants_status(self, reads: int, empty_streak: int) -> bool:
        """Whether to ask ``session.status`` now, after ``reads`` reads on this connection."""
        return reads % self.status_every == 0 or (empty_streak > 0 and empty_streak % 5 == 0)


def parse_cursor(cursor: str) -> tuple[str, int]:
    """``"<client_id>:<position>"`` -> ``(client_id, position)``.

    >>> parse_cursor("3f9a1c0e:120")
    ('3f9a1c0e', 120)

    Raises:
        ConfigurationError: the cursor is not of that form.
    """
    client_id, sep, position = cursor.rpartition(":")
    if not sep or not client_id or not position.isdigit():
        raise ConfigurationError(
            f"a mailbox cursor is '<client_id>:<position>', got {cursor[:80]!r}"
        )
    return client_id, int(position)


def new_client_id() -> str:
    """A fresh ``client_id`` (16 hex digits, like the vendor SDK's)."""
    return secrets.token_hex(8)


def messages_of(reply: Any) -> list[dict[str, Any]]:
    """The messages in a ``session.read`` reply's ``event_data``, whatever its shape.

    Accepted (the sources disagree): ``None`` (nothing queued); ``{"messages": [...]}``; a bare
    list; a single envelope ``{"type": ..., ...}``. A message in the ``{"type", "timestamp",
    "data"}`` shape is rewritten as an envelope with ``data`` in ``event_data`` (nothing is
    dropped); a message that is not an object is kept as the value of an envelope of type
    ``"mailbox.message"`` so that it surfaces as an unknown event, never vanishes.

    >>> messages_of(None), messages_of({"messages": []})
    ([], [])
    >>> messages_of({"type": "inference.result", "timestamp": 1.5, "data": {"response": ["x"]}})
    [{'type': 'inference.result', 'timestamp': 1.5, 'event_data': {'response': ['x']}}]
    """
    if reply is None:
        return []
    if isinstance(reply, Mapping) and "messages" in reply and "type" not in reply:
        items = reply["messages"]
        items = [] if items is None else items
    elif isinstance(reply, list):
        items = reply
    else:
        items = [reply]
    if not isinstance(items, list):
        items = [items]
    return [_envelope(item) for item in items]


def _envelope(message: Any) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        return {"type": "mailbox.message", "event_data": message}
    envelope = dict(message)
    if "event_data" not in envelope and "data" in envelope:
        envelope["event_data"] = envelope.pop("data")
    return envelope


def status_of(reply: Mapping[str, Any]) -> str | None:
    """The session status in a ``session.status`` reply (a record, or one wrapped in event_data)."""
    for record in (reply, reply.get("event_data")):
        if isinstance(record, Mapping):
            status = record.get("session_status", record.get("status"))
            if isinstance(status, str):
                return status
    return None


class _Lost(TransportError):
    """The socket died while a ``session.read`` was in flight: its batch may be lost."""


class MailboxSource(Observable[Event]):
    """A cold Observable of the mailbox's messages, as :class:`~rxlens.sse.Event` values.

    Each subscription opens its own WebSocket to ``endpoint`` (the session record's
    ``session_endpoint``; never built from the base URL), authenticates with ``Authorization:
    Bearer`` on the upgrade (or, with ``auth="subprotocol"``, the browser form
    ``authenticationauthorization.bearer.<key>``) and reads with ``session.read`` under its
    ``client_id``. Like :class:`rxlens.sse.SSESource` it keeps a cursor, :attr:`last_event_id`
    (``"<client_id>:<position>"``), that the next subscription resumes from, so
    :func:`rxlens.operators.resume` reconnects it unchanged.

    Replies are matched by type: a stray reply (a ``session.heartbeat.response``, say) is logged
    and skipped, so one unexpected frame never shifts every later answer. A ``{"type": "error"}``
    reply ends the subscription with :class:`~rxlens.errors.MailboxError`.

    Termination: the session ended and its mailbox is drained -> ``on_completed``; the socket
    closed or failed -> ``on_error(TransportError)`` (retryable); no reply within
    ``poll.reply_timeout`` -> ``ReadTimeout`` (retryable); 401/403 on the upgrade ->
    ``AuthenticationError``; 404 -> ``NotFound``; an exception from the subscriber's own
    ``on_next`` -> that exception, never retried.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        client_id: str | None = None,
        last_event_id: str = "",
        poll: PollPolicy | None = None,
        on_lost: OnLost = "warn",
        on_state: StateCallback | None = None,
        auth: Literal["header", "subprotocol"] = "header",
        open_timeout: float = 10.0,
        closer: Closer | None = None,
    ) -> None:
        super().__init__()
        #: The client's (see rxlens.sse._closing): its close() ends this source's connections.
        self.closer = closer
        if on_lost not in ("warn", "replay"):
            raise ConfigurationError(f"on_lost is 'warn' or 'replay', got {on_lost!r}")
        if not endpoint.startswith(("ws://", "wss://")):
            raise ConfigurationError(
                f"a session_endpoint is a ws:// or wss:// URL, got {endpoint[:80]!r}"
            )
        self.endpoint = endpoint
        self._api_key = api_key
        if last_event_id:
            self.client_id, self.position = parse_cursor(last_event_id)
        else:
            self.client_id, self.position = client_id or new_client_id(), 0
        self.poll = poll or PollPolicy()
        self.on_lost: OnLost = on_lost
        self.on_state = on_state
        self.auth = auth
        self.open_timeout = open_timeout
        #: How many times a batch may have been lost in a drop (reported, or replayed).
        self.maybe_lost = 0
        self._pending_loss = False
        self._rng = random.Random(self.poll.seed)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The endpoint, under the name connection states and ``resume`` use for it."""
        return self.endpoint

    @property
    def last_event_id(self) -> str:
        """The cursor: ``"<client_id>:<position>"`` of the last message delivered."""
        return f"{self.client_id}:{self.position}"

    def __repr__(self) -> str:
        # Never the key.
        return f"MailboxSource({self.endpoint!r}, last_event_id={self.last_event_id!r})"

    def _state(self, kind: Any, **fields: Any) -> None:
        if self.on_state is None:
            return
        state = ConnectionState(
            kind, self.endpoint, last_event_id=self.last_event_id, at=time.time(), **fields
        )
        try:
            self.on_state(state)
        except Exception:
            log.exception("on_state callback raised (ignored)")

    def _subscribe_core(
        self, observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        stop = _Stop()
        thread = threading.Thread(
            target=self._run, args=(observer, stop), name="rxlens-mailbox-reader", daemon=True
        )
        thread.start()
        return Disposable(stop.set)

    # --- one connection -------------------------------------------------------------------------

    def _run(self, observer: abc.ObserverBase[Event], stop: _Stop) -> None:
        with registered(self.closer, stop.close_by_client) as may_open:
            if not may_open:
                observer.on_error(ClientClosed("mailbox stream"))  # no connection from it
                return
            self._run_connection(observer, stop)

    def _run_connection(self, observer: abc.ObserverBase[Event], stop: _Stop) -> None:
        try:
            outcome = self._connection(observer, stop)
        except _Downstream as wrapped:
            if not stop.is_set():
                observer.on_error(wrapped.error)
            return
        except RxLensError as error:
            outcome = error
        except Exception as error:  # a library failure: typed, never a dead thread
            outcome = TransportError(f"mailbox connection failed: {type(error).__name__}")
        if stop.is_set():
            self._state("closed")
            if stop.client_closed:
                observer.on_error(ClientClosed("mailbox stream"))
            return
        if outcome is None:
            self._state("closed")
            observer.on_completed()
            return
        if isinstance(outcome, _Lost):
            self._pending_loss = True
        observer.on_error(outcome)

    def _connection(self, observer: abc.ObserverBase[Event], stop: _Stop) -> RxLensError | None:
        skip = 0
        note_sent = False
        if self._pending_loss:
            self._pending_loss = False
            self.maybe_lost += 1
            if self.on_lost == "replay":
                # A fresh client id reads from the start of what the server keeps: skip what
                # was delivered, so every message arrives once.
                skip, self.client_id, self.position = self.position, new_client_id(), 0
                log.info("mailbox: replaying under a new client id, skipping %d", skip)
            else:
                note = (
                    "the connection dropped while a session.read was in flight: "
                    "its messages may be lost (on_lost='replay' recovers them)"
                )
                warnings.warn(f"rxlens mailbox: {note}", RuntimeWarning, stacklevel=1)
                self._state("connecting", note=note)
                note_sent = True
        if not note_sent:
            self._state("connecting")
        ws = self._open(stop)
        if ws is None:
            return None
        try:
            self._state("open")
            return self._read_loop(ws, observer, stop, skip)
        finally:
            stop.detach()
            _close_quietly(ws)

    def _open(self, stop: _Stop) -> Any:
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect as ws_connect

        headers: dict[str, str] = {}
        subprotocols: list[Any] | None = None
        if self._api_key and self.auth == "header":
            headers["Authorization"] = f"Bearer {self._api_key}"
        elif self._api_key:
            subprotocols = [
                f"authenticationauthorization.bearer.{self._api_key}",
                "event-protocol-v1",
            ]
        # Errors are raised after the except blocks, so that their __context__ holds nothing
        # of the handshake (whose request carries the key).
        failure: RxLensError | None = None
        try:
            ws = ws_connect(
                self.endpoint,
                additional_headers=headers,
                subprotocols=subprotocols,
                open_timeout=self.open_timeout,
                max_size=MAX_REPLY_BYTES,
                compression=None,
                proxy=None,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=1,
            )
        except InvalidStatus as error:
            failure = _status_error(error.response.status_code, self.endpoint)
        except InvalidHandshake as error:
            failure = TransportError(f"mailbox handshake failed: {type(error).__name__}")
        except (OSError, TimeoutError) as error:
            failure = TransportError(f"cannot reach the mailbox: {_cause(error)}")
        if failure is not None:
            raise failure
        if not stop.attach(ws):
            _close_quietly(ws)
            return None
        return ws

    def _read_loop(
        self, ws: Any, observer: abc.ObserverBase[Event], stop: _Stop, skip: int
    ) -> RxLensError | None:
        reads = 0
        empty = 0
        ended = False
        while not stop.is_set():
            if reads and self.poll.wants_status(reads, empty) and not ended:
                status = status_of(self._request(ws, "session.status", None, stop))
                ended = status is not None and status.upper().endswith(ENDED_STATUSES)
            request = {"client_id": self.client_id}
            reply = self._request(ws, "session.read", request, stop, in_flight_loss=True)
            reads += 1
            messages = messages_of(reply.get("event_data"))
            if not messages:
                if ended:
                    return None  # the session ended and its mailbox is drained
                empty += 1
                if stop.wait(self.poll.delay(empty, self._rng.random())):
                    return None
                continue
            empty = 0
            for message in messages:
                if stop.is_set():
                    return None
                if skip:
                    skip -= 1
                    self.position += 1
                    continue
                self.position += 1
                data = json.dumps(message, separators=(",", ":"))
                cursor = self.last_event_id
                try:
                    observer.on_next(Event(data, "message", cursor, cursor))
                except Exception as error:
                    raise _Downstream(error) from None
        return None

    def _request(
        self,
        ws: Any,
        kind: str,
        event_data: Any,
        stop: _Stop,
        *,
        in_flight_loss: bool = False,
    ) -> Mapping[str, Any]:
        """Send one request and wait for its reply, skipping replies of other types."""
        from websockets.exceptions import ConnectionClosed

        failure: RxLensError
        try:
            ws.send(json.dumps({"type": kind, "event_data": event_data}))
            deadline = time.monotonic() + self.poll.reply_timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                reply = _decode_reply(ws.recv(timeout=left))
                rtype = reply.get("type")
                if rtype == "error":
                    raise MailboxError(reply)
                if rtype == f"{kind}.response" or (
                    kind == "session.status" and status_of(reply) is not None
                ):
                    return reply
                log.debug("mailbox: skipped a %r reply while waiting for %s", rtype, kind)
        except TimeoutError:
            failure = ReadTimeout(f"no reply to {kind} within {self.poll.reply_timeout:g} s")
        except (ConnectionClosed, OSError) as error:
            if stop.is_set():
                failure = TransportError("disposed")
            else:
                cls = _Lost if in_flight_loss else TransportError
                failure = cls(f"the mailbox connection closed during {kind}: {_cause(error)}")
        raise failure


class _Downstream(Exception):
    """Carries an exception raised by the subscriber's own ``on_next`` out of the read loop."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Stop:
    """Dispose from any thread: sets the flag, wakes a wait, and shuts a blocked socket down."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._ws: Any = None
        #: Set by the client's close() (the subscriber is told), not by a dispose.
        self.client_closed = False

    def close_by_client(self) -> None:
        self.client_closed = True
        self.set()

    def attach(self, ws: Any) -> bool:
        with self._lock:
            if self._event.is_set():
                return False
            self._ws = ws
            return True

    def detach(self) -> None:
        with self._lock:
            self._ws = None

    def set(self) -> None:
        with self._lock:
            self._event.set()
            ws = self._ws
        if ws is not None:
            # Shutting the socket down wakes a recv() blocked in another thread at once.
            try:
                ws.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds) if seconds > 0 else self._event.is_set()


def _decode_reply(frame: str | bytes) -> Mapping[str, Any]:
    try:
        reply = json.loads(frame)
    except (ValueError, RecursionError):
        size = len(frame)
        raise DecodeError(f"the mailbox sent a frame that is not JSON ({size} bytes)") from None
    if not isinstance(reply, Mapping):
        raise DecodeError(f"the mailbox sent JSON that is not an object: {type(reply).__name__}")
    return reply


def _status_error(status: int, url: str) -> RxLensError:
    if status in (401, 403):
        return AuthenticationError(status, url)
    if status == 404:
        return NotFound(status, url)
    return HTTPStatusError(status, url)


def _cause(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    text = str(error)
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _close_quietly(ws: Any) -> None:
    try:
        ws.close()
    except Exception:  # closing a dead socket: nothing more to learn
        pass


def probe(endpoint: str, *, api_key: str | None = None, timeout: float = 10.0) -> bool:
    """Whether the mailbox at ``endpoint`` holds messages, asked once under a throwaway
    ``client_id`` (which moves no real reader's position).

    ``channel="auto"`` uses it when the lens metadata names no writer.

    Raises:
        AuthenticationError: 401/403 on the upgrade.
        NotFound: 404 on the upgrade.
        TransportError: the socket could not be opened or closed before the reply.
        ReadTimeout: no reply within ``timeout``.
        MailboxError: an ``{"type": "error"}`` reply.
    """
    source = MailboxSource(
        endpoint,
        api_key=api_key,
        poll=PollPolicy(reply_timeout=timeout),
        open_timeout=timeout,
    )
    stop = _Stop()
    ws = source._open(stop)
    try:
        reply = source._request(ws, "session.read", {"client_id": new_client_id()}, stop)
    finally:
        _close_quietly(ws)
    return bool(messages_of(reply.get("event_data")))


def mailbox(
    endpoint: str,
    *,
    api_key: str | None = None,
    client_id: str | None = None,
    last_event_id: str = "",
    poll: PollPolicy | None = None,
    on_lost: OnLost = "warn",
    on_state: StateCallback | None = None,
) -> MailboxSource:
    """One mailbox reader per subscription, as a cold Observable of :class:`~rxlens.sse.Event`.

    See :class:`MailboxSource`. Pipe it through ``rxlens.operators.typed()`` for Lens events, and
    ``rxlens.operators.resume(policy)`` to reconnect.
    """
    return MailboxSource(
        endpoint,
        api_key=api_key,
        client_id=client_id,
        last_event_id=last_event_id,
        poll=poll,
        on_lost=on_lost,
        on_state=on_state,
    )


__all__ = [
    "ENDED_STATUSES",
    "MailboxError",
    "MailboxSource",
    "PollPolicy",
    "mailbox",
    "messages_of",
    "new_client_id",
    "parse_cursor",
    "probe",
    "status_of",
]
