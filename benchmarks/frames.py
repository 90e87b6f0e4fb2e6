"""The bytes every contender is fed: Lens frames, as the server writes them.

A result frame is about 165 bytes on the wire (``id:`` line, one ``data:`` line of JSON, blank
line). Its payload carries ``seq`` (the event's number, to count losses and duplicates) and ``t``
(the server's ``time.monotonic_ns()`` when it wrote the frame, as a string so that it can be
patched in without re-encoding; ``"0"`` where it is not measured). ``CLOCK_MONOTONIC`` is one
clock for every process of the machine, so the subscriber's ``monotonic_ns()`` minus ``t`` is
the time from the server's write to the subscriber.
"""

from __future__ import annotations

from typing import Any

RESULT = "inference.result"
START = "sse.stream.start"
END = "sse.stream.end"

_RESULT = (
    b'id: %d\ndata: {"type":"inference.result","event_data":{"seq":%d,"t":"%d",'
    b'"response":["HEALTHY",{"HEALTHY":3,"BROKEN":2}],"query_metadata":{"window_size":100}}}'
    b"\n\n"
)
_START = b'data: {"type":"sse.stream.start","event_data":{"session_id":"%s","reader_id":"%s"}}\n\n'
_END = b'data: {"type":"sse.stream.end","event_data":{"num_messages":%d}}\n\n'
#: The part of a large event before its stamp, and after it (the padding follows).
_LARGE_HEAD = b'id: %d\ndata: {"type":"inference.result","event_data":{"seq":%d,"t":"'
_LARGE_MID = b'","response":["'
_LARGE_TAIL = b'"],"query_metadata":{"window_size":100}}}\n\n'

#: Frames per HTTP chunk in bulk bodies: about 64 KiB, what a buffered server writes at once.
BULK_FRAMES = 384


def result(seq: int, stamp: int = 0) -> bytes:
    """One ``inference.result`` frame with id ``seq``."""
    return _RESULT % (seq, seq, stamp)


def start(session_id: str, reader: int) -> bytes:
    """The ``sse.stream.start`` frame that opens every connection (no id, as Lens sends it)."""
    return _START % (session_id.encode(), b"%016x" % reader)


def end(count: int) -> bytes:
    """The ``sse.stream.end`` frame the server sends before closing gracefully."""
    return _END % count


def chunk(body: bytes) -> bytes:
    """``body`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(body), body)


LAST_CHUNK = b"0\r\n\r\n"


def bulk(first: int, count: int) -> bytes:
    """Frames ``first`` .. ``first + count - 1`` as HTTP chunks of :data:`BULK_FRAMES` frames."""
    parts: list[bytes] = []
    template = _RESULT
    for lo in range(first, first + count, BULK_FRAMES):
        hi = min(lo + BULK_FRAMES, first + count)
        parts.append(chunk(b"".join([template % (i, i, 0) for i in range(lo, hi)])))
    return b"".join(parts)


class LargeEvent:
    """A result frame of about ``size`` bytes, whose stamp is written just before it is sent."""

    def __init__(self, seq: int, size: int) -> None:
        self.head = _LARGE_HEAD % (seq, seq)
        fixed = len(self.head) + 20 + len(_LARGE_MID) + len(_LARGE_TAIL)
        self.rest = _LARGE_MID + b"x" * max(0, size - fixed) + _LARGE_TAIL

    def parts(self, stamp: int) -> tuple[bytes, bytes]:
        """The HTTP chunk as (small head with the stamp, the big rest): two writes, no copy."""
        stamped = self.head + b"%020d" % stamp
        total = len(stamped) + len(self.rest)
        return b"%x\r\n%b" % (total, stamped), self.rest + b"\r\n"


def stamp_of(payload: Any) -> int:
    """The server's write time from a decoded payload (a dict envelope or a typed event)."""
    data = payload["event_data"] if isinstance(payload, dict) else payload.event_data
    return int(data["t"])


def seq_of(payload: Any) -> int:
    """The event's number from a decoded payload (a dict envelope or a typed event)."""
    data = payload["event_data"] if isinstance(payload, dict) else payload.event_data
    return int(data["seq"])
