"""Play a drawn (or recorded) timed stream into a real emulator session.

Virtual time tests the pipeline; the end-to-end property is that the same stream, served over
real HTTP by :class:`rxlens.emulator.LensEmulator` (with its faults), still gives the same
answers. The drawn stream is what one client saw, connection frames included; the emulator makes
its own connection frames, so only the data events are played: ``sse.stream.start`` and
heartbeats are left to the emulator, the copies a drop replayed are played once, and a final
``sse.stream.end`` becomes the session's destruction (its readers then get the end frame).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

from rxlens._timed import data_events
from rxlens.events import STREAM_END, LensEvent, MalformedEvent, to_json


class _Emulator(Protocol):
    """What playing needs of :class:`rxlens.emulator.LensEmulator` (its public methods)."""

    def push(self, session_id: str, payload: Any) -> int: ...

    def destroy(self, session_id: str) -> None: ...

    def play(
        self,
        session_id: str,
        payloads: Iterable[Any],
        *,
        offsets: Iterable[float] | None = ...,
        speed: float = ...,
        destroy_when_done: bool = ...,
    ) -> Any: ...

__all__ = ["play_stream"]


def _payload(event: LensEvent) -> Any:
    return event.raw if isinstance(event, MalformedEvent) else to_json(event)


def play_stream(
    emulator: _Emulator,
    session_id: str,
    timed_events: Iterable[tuple[float, LensEvent]],
    *,
    speed: float | None = None,
    destroy_when_done: bool | None = None,
) -> list[LensEvent]:
    """Play the data events of a timed stream into an emulator session; return them.

    With ``speed=None`` every event is pushed now, in order, and the returned events carry the
    ids the emulator gave them (``"1"``, ``"2"``, ...), so they equal what a reader parses. With a
    ``speed`` they go out in the background at ``seconds / speed`` on the emulator's clock and
    the returned events have no id (compare them without ids). ``destroy_when_done`` destroys the
    session after the last event (default: when the stream ends with ``sse.stream.end``).

    With the emulator's default ``replay="live"``, a reader sees only what is pushed after it
    connected: connect first, or use ``LensEmulator(replay="all")``.

    Raises:
        rxlens.emulator.UnknownSession: no such session.
        rxlens.emulator.SessionEnded: the session is destroyed.
    """
    pairs = list(timed_events)
    if destroy_when_done is None:
        destroy_when_done = bool(pairs) and pairs[-1][1].type == STREAM_END
    data = data_events(pairs)
    if speed is None:
        played = [
            replace(event, id=str(emulator.push(session_id, _payload(event)))) for _, event in data
        ]
        if destroy_when_done:
            emulator.destroy(session_id)
        return played
    emulator.play(
        session_id,
        [_payload(event) for _, event in data],
        offsets=[at for at, _ in data],
        speed=speed,
        destroy_when_done=destroy_when_done,
    )
    return [replace(event, id=None) for _, event in data]
