"""The bytes of server-sent-event frames as the emulator writes them.

One job: turn a payload (already JSON-encoded) into the frame bytes of the wire-format notes,
``event: message`` / ``id: N`` / ``data: <one line of JSON>`` / blank line. The per-frame path of
a busy stream goes through :func:`data_frame` only, so it is kept to one ``%``-format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Templates indexed by ``(with_id, crlf)``; ``%d`` is the id, ``%b`` the JSON bytes.
_WITH_ID = b"event: message\nid: %d\ndata: %b\n\n"
_WITH_ID_CRLF = b"event: message\r\nid: %d\r\ndata: %b\r\n\r\n"
_NO_ID = b"event: message\ndata: %b\n\n"
_NO_ID_CRLF = b"event: message\r\ndata: %b\r\n\r\n"


def encode_payload(payload: Mapping[str, Any] | str | bytes) -> bytes:
    """The ``data:`` bytes of a payload: compact one-line JSON for a mapping, else verbatim.

    A ``str`` or ``bytes`` payload is sent exactly as given (tests use it to send malformed
    data); line breaks in it would split the frame, so they are refused.
    """
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, str):
        data = payload.encode("utf-8")
    else:
        # ensure_ascii keeps the frame one line and pure ASCII whatever the text holds.
        data = json.dumps(payload, separators=(",", ":")).encode("ascii")
    if b"\n" in data or b"\r" in data:
        raise ValueError("a raw payload must be a single line (no CR or LF)")
    return data


def data_frame(event_id: int | None, data: bytes, *, crlf: bool = False) -> bytes:
    """One data frame; ``event_id=None`` leaves the ``id:`` line out."""
    if event_id is None:
        return (_NO_ID_CRLF if crlf else _NO_ID) % data
    return (_WITH_ID_CRLF if crlf else _WITH_ID) % (event_id, data)


def control_frame(
    event_type: str,
    event_data: Mapping[str, Any] | None,
    *,
    crlf: bool = False,
    retry_ms: int | None = None,
) -> bytes:
    """A frame the server writes on its own (start, heartbeat, end, gap notice).

    Control frames carry no ``id:`` line, so a client's Last-Event-ID keeps pointing at the last
    data event it received and a resume never skips or repeats data.
    """
    payload: dict[str, Any] = {"type": event_type}
    if event_data is not None:
        payload["event_data"] = dict(event_data)
    frame = data_frame(None, encode_payload(payload), crlf=crlf)
    if retry_ms is not None:
        eol = b"\r\n" if crlf else b"\n"
        frame = b"retry: %d" % retry_ms + eol + frame
    return frame
