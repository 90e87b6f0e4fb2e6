"""How an event reads to a person: one line for a terminal, a notebook or a log.

Shared by the command line and :mod:`rxlens.notebook`, so that ``rxlens tail`` and a notebook
show an event the same way.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rxlens.events import (
    HEARTBEAT,
    STREAM_END,
    STREAM_START,
    Heartbeat,
    InferenceError,
    InferenceResult,
    LensEvent,
    LogEvent,
    MalformedEvent,
    SessionFailed,
    to_json,
)

#: Control frames: they tell about the connection, not about the lens.
CONTROL_TYPES = frozenset({STREAM_START, HEARTBEAT, STREAM_END})


def short_id(session_id: str | None, width: int = 12) -> str:
    """A session id cut to ``width`` characters, for tables."""
    if not session_id:
        return "-"
    return session_id if len(session_id) <= width else session_id[: width - 1] + "…"


def clock(at: float) -> str:
    """``HH:MM:SS.mmm`` local time of an epoch timestamp."""
    return datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


def summary(event: LensEvent, limit: int = 100) -> str:
    """What an event says, in a few words (no type, no id)."""
    if isinstance(event, InferenceResult):
        parts: list[str] = []
        if event.text is not None:
            parts.append(event.text)
        scores = event.scores
        if scores:
            parts.append(" ".join(f"{k}={_number(v)}" for k, v in scores.items()))
        elif event.embedding is not None:
            emb = event.embedding
            parts.append(f"embedding {len(emb)} x {len(emb[0]) if emb else 0}")
        timestamp = event.sensor_timestamp
        if timestamp is not None:
            parts.append(f"@{timestamp}")
        elif event.read_index is not None:
            parts.append(f"rows {event.read_index}+{event.window_size or '?'}")
        text = "  ".join(parts) if parts else json.dumps(event.response)[:limit]
    elif isinstance(event, Heartbeat):
        text = str(event.session_status or "")
    elif isinstance(event, InferenceError):
        text = "; ".join(str(m) for m in (event.error_messages or ()))
    elif isinstance(event, LogEvent):
        text = str(event.message or "")
    elif isinstance(event, SessionFailed):
        text = f"session failed: {event.error}"
    elif isinstance(event, MalformedEvent):
        text = f"malformed frame: {event.raw}"
    elif event.type == STREAM_END:
        text = "stream ended"
    elif event.type == STREAM_START:
        text = f"reader {getattr(event, 'reader_id', None) or '?'}"
    else:
        text = json.dumps(event.event_data, separators=(",", ":")) if event.event_data else ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_line(event: LensEvent, *, with_session: bool = False) -> str:
    """One readable line: arrival time, id, type, what it says."""
    head = f"{clock(event.received_at)}  #{event.id or '-':<6} {event.type:<22}"
    if with_session:
        head = f"{short_id(event.session_id)}  " + head
    return f"{head} {summary(event)}".rstrip()


def json_line(event: LensEvent) -> str:
    """One JSON object per event: the Lens envelope plus ``id``, ``received_at``, ``session_id``."""
    record: dict[str, Any] = {
        "id": event.id,
        "received_at": round(event.received_at, 6),
        "session_id": event.session_id,
    }
    record.update(to_json(event))
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


__all__ = ["CONTROL_TYPES", "clock", "format_line", "json_line", "short_id", "summary"]
