"""Session state: the bounded event log, the readers attached to it, and what the lens produces.

A :class:`Session` owns one :class:`threading.Condition`. Producers (the ticker, ``push``, a
reader pulling a max-speed playback) append under it and ``notify_all``; each reader thread
waits on it for new events, the next heartbeat or the idle deadline. The log stores the JSON
bytes of each event once, so a thousand readers cost one encoding per event.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rxlens.emulator._faults import FaultBudget, Faults, MailboxFaults
from rxlens.emulator._frames import encode_payload
from rxlens.emulator._lenses import LensSpec, generate, modify_result
from rxlens.emulator._stats import ReaderStats, SessionStats

StatusStyle = Literal["mixed", "plain", "enum", "numeric"]

#: Numeric status codes. "3" (running) and "6" (failed) are seen in the wild; the rest follow
#: the order of the documented names and are a guess.
_NUMERIC = {
    "REGISTERED": "1",
    "STARTING": "2",
    "RUNNING": "3",
    "STALE": "4",
    "DESTROYED": "5",
    "FAILED": "6",
}

#: Spellings of the SSE writer seen in lens configs and ``output_stream.set`` events.
SSE_WRITERS = frozenset({"server_sent_events_writer", "server_side_events_writer", "sse_writer"})

#: ``session.modify`` keys that carry training examples by class name (``input_n_shot`` is what
#: the vendor's Machine State example sends).
_TRAINING_KEYS = ("input_n_shot", "n_shot", "examples")


def status_string(status: str, style: StatusStyle, *, context: str = "") -> str:
    """The wire spelling of a status name (``"RUNNING"``) in the given style.

    ``"mixed"`` reproduces what was observed: the create response spells
    ``LensSessionStatus.SESSION_STATUS_REGISTERED``, every other place ``SESSION_STATUS_RUNNING``.
    """
    if style == "numeric":
        return _NUMERIC[status]
    if style == "enum" or (style == "mixed" and context == "create"):
        return f"LensSessionStatus.SESSION_STATUS_{status}"
    return f"SESSION_STATUS_{status}"


class EventLog:
    """A ring buffer of event data bytes addressed by consecutive integer ids (from 1)."""

    __slots__ = ("_buf", "capacity", "last_id")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the log must hold at least one event")
        self.capacity = capacity
        self._buf: list[bytes] = [b""] * capacity
        self.last_id = 0

    @property
    def first_id(self) -> int:
        """The oldest id still held (``last_id + 1`` style: 1 when nothing was logged)."""
        return max(1, self.last_id - self.capacity + 1)

    def append(self, data: bytes) -> int:
        self.last_id += 1
        self._buf[self.last_id % self.capacity] = data
        return self.last_id

    def get(self, event_id: int) -> bytes:
        """The data of ``event_id``; the caller keeps ``first_id <= event_id <= last_id``."""
        return self._buf[event_id % self.capacity]


@dataclass(slots=True)
class Reader:
    """The live counters of one SSE connection (written by its own thread only)."""

    reader_id: str
    connection: int
    last_event_id: str | None
    events_sent: int = 0
    bytes_sent: int = 0
    heartbeats_sent: int = 0
    end_reason: str | None = None

    def snapshot(self) -> ReaderStats:
        return ReaderStats(
            reader_id=self.reader_id,
            connection=self.connection,
            last_event_id=self.last_event_id,
            events_sent=self.events_sent,
            bytes_sent=self.bytes_sent,
            heartbeats_sent=self.heartbeats_sent,
            open=self.end_reason is None,
            end_reason=self.end_reason,
        )


@dataclass(slots=True)
class _Pull:
    """A max-speed playback: readers pull the next payloads when they reach the log's end."""

    items: Iterator[Mapping[str, Any] | str | bytes]
    destroy_when_done: bool


class SessionDestroyed(Exception):
    """Internal: an append to a destroyed session."""


@dataclass(eq=False)
class Session:
    """One Lens session of the emulator."""

    session_id: str
    lens_id: str
    spec: LensSpec
    options: dict[str, Any]
    rate: float
    seed: int
    log_size: int
    count: int | None = None
    destroy_when_done: bool = False
    status: str = "REGISTERED"
    cond: threading.Condition = field(default_factory=threading.Condition)
    created_at: float = field(default_factory=time.time)
    created_monotonic: float = field(default_factory=time.monotonic)
    output_to_sse: bool = True
    destroyed: bool = False
    num_outputs: int = 0
    scripted_index: int = 0
    connections: int = 0
    consumer_requests: int = 0
    last_event_id_header: str | None = None
    authorization_seen: bool | None = None
    faults: Faults | None = None
    budget: FaultBudget | None = None
    input_stream: dict[str, Any] | None = None
    readers: dict[str, Reader] = field(default_factory=dict)
    closed_readers: deque[Reader] = field(default_factory=lambda: deque(maxlen=1000))
    pull: _Pull | None = None
    queries: int = 0
    #: The lens's model parameters as ``session.get`` shows them; ``session.modify`` merges in.
    settings: dict[str, Any] = field(default_factory=dict)
    #: ``time.time()`` of the last change a client can see (an output, a status, a modify).
    updated_at: float = field(default_factory=time.time)
    #: ``time.monotonic()`` of the destroy, for the registry's retention.
    destroyed_at: float | None = None
    #: The ``session.read`` mailbox: next id to read per ``client_id``.
    mailbox_cursors: dict[str, int] = field(default_factory=dict)
    #: Mailbox connections dropped by the ``drop_after`` fault so far.
    mailbox_drops: int = 0
    #: ``session.read`` requests answered (over the socket and over REST).
    mailbox_reads: int = 0
    #: This session's own mailbox faults (``None``: the emulator's).
    mailbox_faults: MailboxFaults | None = None

    def __post_init__(self) -> None:
        self.log = EventLog(self.log_size)
        # The mailbox is a log of its own, numbered like the SSE one: a lens writes to one
        # channel or the other, so the two never hold the same output.
        self.mailbox_log = EventLog(self.log_size)
        self.rng = random.Random(self.seed)

    # --- producing (callers hold no lock) -------------------------------------------------

    def append(self, payload: Mapping[str, Any] | str | bytes, *, lens_output: bool = False) -> int:
        """Log one event and wake the readers; returns its id.

        ``lens_output`` events follow the session's output channel: when the lens config or
        ``output_stream.set`` chose a writer other than SSE they go to the ``session.read``
        mailbox (the id is then the mailbox's), not to the SSE stream.
        """
        data = encode_payload(payload)
        with self.cond:
            return self._append_locked(data, lens_output=lens_output)

    def _append_locked(self, data: bytes, *, lens_output: bool = False) -> int:
        if self.destroyed:
            raise SessionDestroyed(self.session_id)
        self.num_outputs += 1
        self.updated_at = time.time()
        if lens_output and not self.output_to_sse:
            mailbox_id = self.mailbox_log.append(data)
            self.cond.notify_all()
            return mailbox_id
        event_id = self.log.append(data)
        self.cond.notify_all()
        return event_id

    def read_mailbox(self, client_id: str, limit: int) -> list[bytes]:
        """Take up to ``limit`` messages after ``client_id``'s position and advance it.

        A new ``client_id`` starts at the oldest message still held (a fresh id replays the
        mailbox), and a position the log has wrapped past moves up to it.
        """
        with self.cond:
            log = self.mailbox_log
            start = max(self.mailbox_cursors.get(client_id, log.first_id), log.first_id)
            stop = min(log.last_id, start + limit - 1)
            self.mailbox_cursors[client_id] = max(start, stop + 1)
            self.mailbox_reads += 1
            return [log.get(i) for i in range(start, stop + 1)]

    def step(self, n: int = 1) -> list[int]:
        """Produce the next ``n`` scripted events now; returns their ids."""
        ids: list[int] = []
        with self.cond:
            for _ in range(n):
                if self.destroyed or self.done:
                    break
                payload = generate(self.spec, self.rng, self.scripted_index, self.options)
                self.scripted_index += 1
                ids.append(self._append_locked(encode_payload(payload), lens_output=True))
            if self.done and self.destroy_when_done:
                self._destroy_locked()
        return ids

    @property
    def done(self) -> bool:
        """Whether a bounded scripted lens has produced all its events."""
        return self.count is not None and self.scripted_index >= self.count

    def modify(self, event_data: Mapping[str, Any]) -> list[int]:
        """Apply a ``session.modify``: merge its settings (``focus``, ``csv_configs``, ...) into
        what ``session.get`` shows, and acknowledge each training class on the stream with a
        ``session.modify.result`` (classes from ``input_n_shot``, ``n_shot``, ``examples`` or
        ``class_name``)."""
        classes: list[str] = []
        if isinstance(event_data.get("class_name"), str):
            classes.append(event_data["class_name"])
        for key in _TRAINING_KEYS:
            value = event_data.get(key)
            if isinstance(value, Mapping):
                classes.extend(str(name) for name in value)
        with self.cond:
            for key, value in event_data.items():
                if key not in _TRAINING_KEYS and key != "class_name":
                    self.settings[key] = value
            self.updated_at = time.time()
        return [self.append(modify_result(name), lens_output=True) for name in classes]

    def set_status(self, status: str) -> None:
        with self.cond:
            self.status = status
            self.updated_at = time.time()

    def pull_more_locked(self, limit: int) -> None:
        """Append up to ``limit`` playback payloads (caller holds ``cond``)."""
        pull = self.pull
        if pull is None or self.destroyed:
            return
        for _ in range(limit):
            try:
                item = next(pull.items)
            except StopIteration:
                self.pull = None
                if pull.destroy_when_done:
                    self._destroy_locked()
                return
            self._append_locked(encode_payload(item))

    # --- lifecycle --------------------------------------------------------------------------

    def destroy(self) -> None:
        with self.cond:
            self._destroy_locked()

    def _destroy_locked(self) -> None:
        if not self.destroyed:
            self.destroyed = True
            self.destroyed_at = time.monotonic()
            self.updated_at = time.time()
            self.status = "DESTROYED"
            self.pull = None
            self.cond.notify_all()

    def attach(self, reader: Reader) -> None:
        with self.cond:
            self.readers[reader.reader_id] = reader
            self.cond.notify_all()

    def detach(self, reader: Reader, reason: str) -> None:
        with self.cond:
            if reader.end_reason is None:
                reader.end_reason = reason
            if self.readers.pop(reader.reader_id, None) is not None:
                self.closed_readers.append(reader)
            self.cond.notify_all()

    # --- views ------------------------------------------------------------------------------

    def record(self, style: StatusStyle, base_ws: str, *, context: str = "") -> dict[str, Any]:
        """The session record of the API (create, destroy, metadata, session.status)."""
        return {
            "session_id": self.session_id,
            "lens_id": self.lens_id,
            "session_status": status_string(self.status, style, context=context),
            "session_endpoint": f"{base_ws}/lens/sessions/{self.session_id}",
            "session_duration_sec": round(time.monotonic() - self.created_monotonic, 3),
            "num_outputs": self.num_outputs,
            "last_update_timestamp": self.updated_at,
        }

    def snapshot(self, failures_injected: int) -> SessionStats:
        with self.cond:
            readers = [*self.closed_readers, *self.readers.values()]
            return SessionStats(
                session_id=self.session_id,
                lens=self.spec.name,
                status=self.status,
                num_outputs=self.num_outputs,
                oldest_id=self.log.first_id,
                last_id=self.log.last_id,
                readers_open=len(self.readers),
                connections=self.connections,
                consumer_requests=self.consumer_requests,
                last_event_id=self.last_event_id_header,
                authorization_seen=self.authorization_seen,
                failures_injected=failures_injected,
                readers=tuple(r.snapshot() for r in sorted(readers, key=lambda r: r.connection)),
                mailbox_reads=self.mailbox_reads,
            )
