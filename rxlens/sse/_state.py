"""Connection state, as reported to ``on_state`` callbacks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("rxlens.sse")

StateKind = Literal["connecting", "open", "backing_off", "closed", "failed"]


@dataclass(frozen=True)
class ConnectionState:
    """One change of a connection's state.

    ``kind`` is one of:

    - ``"connecting"``: a request is being sent (``last_event_id`` is the cursor it resumes from);
    - ``"open"``: the server answered 200 ``text/event-stream`` (``headers`` are the response's);
    - ``"backing_off"``: the connection failed and a reconnect follows after ``delay`` seconds
      (``attempt`` counts consecutive failures, ``error`` is the failure);
    - ``"closed"``: the stream ended (204, the subscriber disposed, or it completed);
    - ``"failed"``: the connection failed for good (``error``), no reconnect follows.

    ``at`` is the time of the change (epoch seconds, or the scheduler's clock for back-off) and
    ``note`` an optional remark for people (for example that the server sends no event ids).
    """

    kind: StateKind
    url: str
    last_event_id: str = ""
    attempt: int = 0
    delay: float | None = None
    error: BaseException | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    at: float = 0.0
    note: str = ""


StateCallback = Callable[[ConnectionState], None]


def report(callback: StateCallback | None, state: ConnectionState) -> None:
    """Call a state callback; a failing callback is logged, never taken for a stream error."""
    if callback is None:
        return
    try:
        callback(state)
    except Exception:
        log.exception("on_state callback raised (ignored)")
