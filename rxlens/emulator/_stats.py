"""Read-only counters the emulator exposes to tests: what the client side did and received."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReaderStats:
    """One SSE connection to a session's consumer endpoint.

    ``last_event_id`` is the ``Last-Event-ID`` header it sent (``None``: none), ``events_sent``
    and ``bytes_sent`` count data events (and their JSON bytes) written to it, ``end_reason``
    says why it ended (``"session_destroyed"``, ``"idle_timeout"``, ``"dropped"``,
    ``"client_closed"``, ``"emulator_closed"``; ``None`` while open).
    """

    reader_id: str
    connection: int
    last_event_id: str | None
    events_sent: int
    bytes_sent: int
    heartbeats_sent: int
    open: bool
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class SessionStats:
    """A snapshot of one session.

    ``num_outputs`` counts every event the lens produced (as the API's field does),
    ``last_event_id`` and ``authorization_seen`` describe the most recent consumer request
    (the header sent, and whether it carried an ``Authorization`` header at all),
    ``failures_injected`` counts requests answered with an injected error status.
    """

    session_id: str
    lens: str
    status: str
    num_outputs: int
    oldest_id: int
    last_id: int
    readers_open: int
    connections: int
    consumer_requests: int
    last_event_id: str | None
    authorization_seen: bool | None
    failures_injected: int
    readers: tuple[ReaderStats, ...]
    #: ``session.read`` requests answered (over the socket and over REST).
    mailbox_reads: int = 0


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    """A snapshot of the whole emulator."""

    requests: int
    unauthorized: int
    not_found: int
    failures_injected: int
    connections_accepted: int
    connections_open: int
    readers_open: int
    sessions: int
    sessions_running: int
