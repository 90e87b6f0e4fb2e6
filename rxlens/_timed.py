"""Timed streams: ``(seconds, LensEvent)`` pairs as one client saw a session, and their truth.

A client's view of a session mixes connection frames (start, heartbeats, end) with data, and
after a dropped connection the server may send again what the client already has. Tests need
the data the server produced, each once, to compare a pipeline's output with; for a drawn stream
the strategy knows it exactly (:class:`TimedStream`), for any other list :func:`data_events`
works it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rxlens.events import HEARTBEAT, STREAM_END, STREAM_START, LensEvent, MalformedEvent

__all__ = ["TimedStream", "data_events"]

_CONNECTION = (STREAM_START, HEARTBEAT, STREAM_END)


class TimedStream(list[tuple[float, LensEvent]]):
    """A drawn session: ``(seconds, event)`` pairs in time order, plus the truth about it.

    It is a plain list of pairs for everything that takes one (:func:`rxlens.testing.run`,
    :func:`rxlens.testing.cold`); the attributes say what a correct client makes of it:

    - ``sent``: the data events the server produced, each once, in order (no start, heartbeat
      or end frames, no replayed copies): what an exactly-once consumer delivers;
    - ``drops``: how many times the connection dropped (each followed by a new
      ``sse.stream.start`` and the events the server replays after it);
    - ``restarts``: how many times the server's id sequence started again from 1 (on a new
      connection, with new events under old ids);
    - ``ended``: whether the stream ends with ``sse.stream.end``.
    """

    drops: int
    restarts: int
    ended: bool

    def __init__(self, pairs: Sequence[tuple[float, LensEvent]] = ()) -> None:
        super().__init__(pairs)
        self.drops = 0
        self.restarts = 0
        self.ended = False
        self._sent: list[int] = []

    def mark_sent(self) -> None:
        """Record the last pair as a data event the server produced (for :attr:`sent`)."""
        self._sent.append(len(self) - 1)

    @property
    def sent(self) -> list[LensEvent]:
        """The data events the server produced, each once, in order."""
        return [self[i][1] for i in self._sent]

    @property
    def sent_timed(self) -> list[tuple[float, LensEvent]]:
        """:attr:`sent` with the time each was first sent."""
        return [self[i] for i in self._sent]

    @property
    def events(self) -> list[LensEvent]:
        """Every event, without its time."""
        return [event for _, event in self]


def data_events(timed_events: Iterable[tuple[float, LensEvent]]) -> list[tuple[float, LensEvent]]:
    """The data events of a client's view of a stream, each once: what the server produced.

    For a :class:`TimedStream` that is exactly its :attr:`~TimedStream.sent_timed`. For any
    other list, connection frames (start, heartbeat, end) are left out, and so is an event with
    an id not above the last one that equals an event kept since the last time the id went
    down (a copy a resume replayed). A new event equal in id and content to an old one after
    the id sequence restarted is taken for a replay: only a :class:`TimedStream` knows better.
    """
    if isinstance(timed_events, TimedStream):
        return timed_events.sent_timed
    kept: list[tuple[float, LensEvent]] = []
    seen: list[LensEvent] = []
    last_id: int | None = None
    for at, event in timed_events:
        if event.type in _CONNECTION and not isinstance(event, MalformedEvent):
            continue
        number = int(event.id) if event.id is not None and event.id.isdigit() else None
        if number is not None and last_id is not None and number <= last_id:
            if any(event == old for old in seen):
                continue  # replayed after a drop
            seen = []  # the id sequence started again: new events with old ids
        if number is not None:
            last_id = number
        seen.append(event)
        kept.append((at, event))
    return kept
