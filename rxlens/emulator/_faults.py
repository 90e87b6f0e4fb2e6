"""Fault injection: what can go wrong, as one immutable value, and the state that spends it.

:class:`Faults` says what to break (a frozen dataclass; build a new one with
:func:`dataclasses.replace`). The emulator holds one for the whole server and optionally one per
session; a session's own value, when set, replaces the global one. The mutable parts (how many
failing requests are left, how many connections were dropped) live in :class:`FaultBudget`, and
what one SSE connection will do is fixed when it opens, in :class:`ConnectionPlan`, from a
random generator seeded by ``(seed, session id, connection number)``: the same seed gives the
same faults at the same places.

:class:`MailboxFaults` is the same kind of value for the ``session.read`` mailbox (served by
:mod:`rxlens.emulator._mailbox`).
"""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass
from typing import Literal, get_args

from rxlens.errors import ConfigurationError

MalformedKind = Literal["not-json", "no-type", "bytes-wrapper"]
ReplyShape = Literal["messages", "envelope", "data"]

#: Statuses :attr:`Faults.fail_status` may take.
FAIL_STATUSES = (429, 500, 502, 503, 504)

#: Size of the event :attr:`Faults.large_event_after` injects (2 MiB).
LARGE_EVENT_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Faults:
    """What the emulator breaks, for one session or for all. Every field defaults to "no fault".

    Connection faults (counted per SSE connection, over data events only):

    - ``drop_after``: after this many data events, write half of the next data frame and close
      the TCP connection (mid-frame, no terminating chunk).
    - ``drop_rate``: probability (0..1) that any data frame is cut the same way.
    - ``drops``: at most this many connections are dropped (``None``: every one).
    - ``stall_after``: after this many data events, send nothing at all (heartbeats included)
      for ``stall_for`` seconds, or until the client or the emulator closes (``None``).
    - ``stalls``: at most this many connections stall (``None``: every one).

    Request faults:

    - ``fail_next``: the next K requests are answered ``fail_status`` with a JSON
      ``{"errors": [...]}`` body. A session's own faults count the requests naming that
      session (consumer, events, destroy, metadata); global faults count every other request.
    - ``fail_status``: 429, 500, 502, 503 or 504.
    - ``retry_after``: seconds for a ``Retry-After`` header (a 429 always gets one, default 1).

    Framing faults (every data frame of the connection, unless said otherwise):

    - ``malformed``: every ``malformed_every``-th data frame is sent as ``"not-json"`` (cut
      JSON), ``"no-type"`` (JSON without ``type``) or ``"bytes-wrapper"`` (``b'{...}'``).
    - ``crlf``: CRLF line endings.
    - ``retry_ms``: a ``retry: N`` field in the first frame of each connection.
    - ``large_event_after``: after this many data events, one extra ``inference.result`` event of
      ``large_event_bytes`` (2 MiB) with no id.
    - ``slow_drip``: every byte in its own write (and its own HTTP chunk).
    - ``ids``: ``False`` sends no ``id:`` lines (as the real server may do).

    Response faults:

    - ``close_delimited``: the stream has no chunked encoding and no Content-Length, ends with
      ``Connection: close``.
    - ``content_type``: send this Content-Type instead of ``text/event-stream``.
    """

    drop_after: int | None = None
    drop_rate: float = 0.0
    drops: int | None = None
    stall_after: int | None = None
    stall_for: float | None = None
    stalls: int | None = None
    fail_next: int = 0
    fail_status: int = 503
    retry_after: float | None = None
    malformed: MalformedKind | None = None
    malformed_every: int = 1
    crlf: bool = False
    retry_ms: int | None = None
    large_event_after: int | None = None
    large_event_bytes: int = LARGE_EVENT_BYTES
    slow_drip: bool = False
    ids: bool = True
    close_delimited: bool = False
    content_type: str | None = None

    def __post_init__(self) -> None:
        for name in ("drop_after", "drops", "stall_after", "stalls", "large_event_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"Faults.{name} must be >= 0, got {value}")
        if not 0.0 <= self.drop_rate <= 1.0:
            raise ConfigurationError(f"Faults.drop_rate must be in [0, 1], got {self.drop_rate}")
        if self.fail_next < 0:
            raise ConfigurationError(f"Faults.fail_next must be >= 0, got {self.fail_next}")
        if self.fail_status not in FAIL_STATUSES:
            raise ConfigurationError(
                f"Faults.fail_status must be one of {FAIL_STATUSES}, got {self.fail_status}"
            )
        if self.malformed is not None and self.malformed not in get_args(MalformedKind):
            raise ConfigurationError(
                f"Faults.malformed must be one of {get_args(MalformedKind)}, got {self.malformed!r}"
            )
        if self.malformed_every < 1:
            raise ConfigurationError("Faults.malformed_every must be >= 1")
        if self.large_event_bytes < 64:
            raise ConfigurationError("Faults.large_event_bytes must be >= 64")

    @property
    def frame_level(self) -> bool:
        """Whether any fault needs the frame-by-frame path (the fast path batches frames)."""
        return (
            self.drop_after is not None
            or self.drop_rate > 0
            or self.stall_after is not None
            or self.malformed is not None
            or self.large_event_after is not None
            or self.slow_drip
        )

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Build from ``"name=value,name=value"`` (the ``rxlens serve --faults`` syntax).

        Booleans accept ``1/0/true/false/yes/no``; a bare name means ``true``. Unknown names or
        bad values raise :class:`~rxlens.errors.ConfigurationError`.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        defaults = cls()
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, raw = item.partition("=")
            name = name.strip().replace("-", "_")
            if name not in fields:
                raise ConfigurationError(
                    f"unknown fault {name!r}; known: {', '.join(sorted(fields))}"
                )
            current = getattr(defaults, name)
            raw = raw.strip() if sep else "true"
            try:
                values[name] = _convert(name, raw, current)
            except ValueError as exc:
                raise ConfigurationError(f"bad value for fault {name!r}: {raw!r}") from exc
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, raw: str, current: object) -> object:
    if raw.lower() in ("none", "null", ""):
        return None
    if isinstance(current, bool):
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if name in ("drop_rate", "stall_for", "retry_after"):
        return float(raw)
    if name in ("malformed", "content_type"):
        return raw
    return int(raw)


class FaultBudget:
    """The spendable part of one :class:`Faults` value: failing requests, drops, stalls.

    Thread-safe: handler threads spend from it concurrently.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._fail_left = faults.fail_next
        self._drops_left = faults.drops
        self._stalls_left = faults.stalls
        self.failures_served = 0

    def take_failure(self) -> tuple[int, float | None] | None:
        """``(status, retry_after)`` if this request is to fail, else ``None``."""
        with self._lock:
            if self._fail_left <= 0:
                return None
            self._fail_left -= 1
            self.failures_served += 1
        retry_after = self.faults.retry_after
        if retry_after is None and self.faults.fail_status == 429:
            retry_after = 1.0
        return self.faults.fail_status, retry_after

    def _take(self, attr: str) -> bool:
        with self._lock:
            left = getattr(self, attr)
            if left is None:
                return True
            if left <= 0:
                return False
            setattr(self, attr, left - 1)
            return True

    def plan(self, rng: random.Random) -> ConnectionPlan:
        """What one new connection will do. Draws on the drop and stall budgets."""
        f = self.faults
        may_drop = (f.drop_after is not None or f.drop_rate > 0) and self._take("_drops_left")
        may_stall = f.stall_after is not None and self._take("_stalls_left")
        return ConnectionPlan(
            faults=f,
            rng=rng,
            drop_after=f.drop_after if may_drop else None,
            drop_rate=f.drop_rate if may_drop else 0.0,
            stall_after=f.stall_after if may_stall else None,
        )


@dataclass(slots=True)
class ConnectionPlan:
    """The faults of one SSE connection, with its own seeded random generator."""

    faults: Faults
    rng: random.Random
    drop_after: int | None
    drop_rate: float
    stall_after: int | None
    large_sent: bool = False

    def drop_now(self, sent: int) -> bool:
        """Whether the data frame after ``sent`` data events is to be cut."""
        if self.drop_after is not None and sent >= self.drop_after:
            return True
        return self.drop_rate > 0 and self.rng.random() < self.drop_rate

    def stall_now(self, sent: int) -> bool:
        """Whether to stall before the data frame after ``sent`` data events (once)."""
        if self.stall_after is not None and sent >= self.stall_after:
            self.stall_after = None
            return True
        return False

    def large_now(self, sent: int) -> bool:
        """Whether to inject the large event before the frame after ``sent`` events (once)."""
        after = self.faults.large_event_after
        if after is not None and not self.large_sent and sent >= after:
            self.large_sent = True
            return True
        return False

    def malform(self, sent: int, data: bytes) -> bytes:
        """The data bytes of the frame after ``sent`` events, malformed if it is its turn."""
        kind = self.faults.malformed
        if kind is None or (sent + 1) % self.faults.malformed_every != 0:
            return data
        if kind == "not-json":
            # Cut the closing brace: the line is no longer valid JSON, but still one line.
            return data[:-1] if len(data) > 1 else b"{"
        if kind == "no-type":
            return _without_type(data)
        return b"b'" + data.replace(b"\\", b"\\\\").replace(b"'", b"\\'") + b"'"


def _without_type(data: bytes) -> bytes:
    import json

    try:
        value = json.loads(data)
    except ValueError:
        return data
    if isinstance(value, dict):
        value.pop("type", None)
    return json.dumps(value, separators=(",", ":")).encode("ascii")


NO_FAULTS = Faults()


@dataclass(frozen=True, slots=True)
class MailboxFaults:
    """How the emulator's mailbox misbehaves, per session or for all. Defaults: no fault.

    - ``batch``: the most messages one ``session.read`` returns (at least 1).
    - ``reply_shape``: ``"messages"`` (``event_data: {"messages": [...]}``, the default),
      ``"envelope"`` (one message per reply, as the envelope itself: ``event_data: {"type",
      "event_data"}``) or ``"data"`` (a ``messages`` list whose items are ``{"type",
      "timestamp", "data"}``, the docs' example).
    - ``drop_after``: once a connection has delivered this many messages, the next read that
      finds messages advances the reader's position and then closes the TCP connection without
      replying: the lost batch. ``drops`` caps how many connections are dropped (``None``: all).
    - ``reply_delay``: seconds to wait before each reply (slow replies).
    - ``heartbeat_reply``: ``False`` leaves ``session.heartbeat`` unanswered.
    - ``close_after`` / ``close_code``: after this many replies on a connection, send a close
      frame with ``close_code`` (1001 going away, 1011 internal error, ...) and end it.
    """

    batch: int = 100
    reply_shape: ReplyShape = "messages"
    drop_after: int | None = None
    drops: int | None = 1
    reply_delay: float = 0.0
    heartbeat_reply: bool = True
    close_after: int | None = None
    close_code: int = 1001

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConfigurationError("MailboxFaults.batch must be >= 1")
        if self.reply_shape not in get_args(ReplyShape):
            raise ConfigurationError(
                f"MailboxFaults.reply_shape must be one of {get_args(ReplyShape)}, "
                f"got {self.reply_shape!r}"
            )
        for name in ("drop_after", "drops", "close_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"MailboxFaults.{name} must be >= 0, got {value}")
        if self.reply_delay < 0:
            raise ConfigurationError("MailboxFaults.reply_delay must be >= 0")
        if not 1000 <= self.close_code <= 4999:
            raise ConfigurationError("MailboxFaults.close_code must be in 1000..4999")


NO_MAILBOX_FAULTS = MailboxFaults()
