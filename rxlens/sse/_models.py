"""The one value the SSE layer hands out."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One dispatched server-sent event (immutable).

    ``type`` is the event type (``"message"`` when the block had no ``event:`` field or an empty
    one), ``data`` the data lines joined with ``"\\n"``, and ``last_event_id`` the stream's last
    event id at dispatch, which persists across events as the spec requires. ``id`` is the id this
    event's own block set, or ``None`` when the block had no (valid) ``id:`` field: use it to tell
    events apart, since ``last_event_id`` is shared by every event after the last ``id:``.

    It is a named tuple because the decoder creates one per event on the hot path and a tuple is
    the cheapest immutable value Python builds (about a fifth of a frozen dataclass).
    """

    data: str
    type: str = "message"
    last_event_id: str = ""
    id: str | None = None
