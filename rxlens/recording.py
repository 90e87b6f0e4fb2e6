"""Recordings of Lens streams: the JSONL format, reading it back, and :func:`replay`.

The format (version 1)
----------------------
A recording is a UTF-8 text file with one JSON object per line, one line per event, in the
order the events were emitted::

    {"v": 1, "id": "42", "received_at": 1741843200.51, "session_id": "lsn-1",
     "type": "inference.result", "raw": "{\\"type\\":\\"inference.result\\",...}"}

(shown folded; each record is a single line). Fields:

``v``
    The format version, ``1``. A reader refuses versions it does not know.
``id``
    The SSE id of the frame, or ``null`` when the server sent none.
``received_at``
    When rxlens received the frame, in epoch seconds (``time.time()``): a finite number from 0
    to :data:`MAX_RECEIVED_AT` (the end of the year 9999).
``session_id``
    The session the event belongs to, or ``null`` (set by ``merge_sessions``).
``type``
    The Lens event type, for reading a recording with ``grep``/``jq``; informative only, the
    type that counts is the one inside ``raw``.
``raw``
    The frame's data text exactly as received (the JSON envelope ``{"type", "event_data"}``),
    so replaying parses the very same bytes again: nothing the server sent is lost, unknown
    fields and malformed frames included.

Readers ignore fields they do not know, so later versions may add fields without a new ``v``.
Writers (:func:`rxlens.sinks.to_jsonl`) flush every line, so a recording cut short by a crash
ends with at most one torn line; readers skip a torn *last* line (one without its newline)
with a warning, and refuse any other bad line with a :class:`RecordingFormatError` that names
its file and line (``.line``): a recording is input like any other, and a hostile one (a line
nested too deep to parse, a time of ``Infinity``) gets the same typed error. Recordings hold
what the server sent and never the API key (it is in no frame).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import CurrentThreadScheduler, TimeoutScheduler

from rxlens._record_format import (
    FORMAT_VERSION,
    MAX_LINE_CHARS,
    MAX_RECEIVED_AT,
    StrPath,
    decode_record,
    encode_record,
    open_for_writing,
    read_recording,
)
from rxlens._record_format import records as read_records
from rxlens.errors import RecordingError, RecordingFormatError, RecordingIOError
from rxlens.events import LensEvent

# The longest single wait of a paced replay (seconds); a longer gap is waited out in steps, so
# no gap or speed can overflow a timer (threading.TIMEOUT_MAX, datetime's range).
_MAX_WAIT = 3600.0


# --- replay ------------------------------------------------------------------------------------


def replay(
    path: StrPath,
    speed: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[LensEvent]:
    """An Observable that re-emits a recording's events, so any pipeline can run on them.

    The file is opened and read lazily on each subscription (one line at a time, so a long
    recording does not sit in memory) and closed on completion, error or disposal. Events come
    back as typed :class:`~rxlens.events.LensEvent` objects parsed from the recorded ``raw``
    text, with their recorded ``id``, ``received_at`` and ``session_id``.

    - ``speed=None``: as fast as possible, all on one scheduled action (by default on the
      subscribing thread, :class:`~reactivex.scheduler.CurrentThreadScheduler`).
    - ``speed=1.0``: at recorded pace: each event is emitted ``received_at`` minus the first
      event's ``received_at`` after the subscription; ``speed=2.0`` twice as fast, and so on.
      Events recorded out of order in time are emitted in file order, without waiting. Time
      comes from ``scheduler`` (else the subscription's, else
      :class:`~reactivex.scheduler.TimeoutScheduler`); a virtual-time scheduler replays an hour
      in no time, with the gaps intact. A gap longer than an hour is waited out an hour at a
      time, so no gap and no speed overflows a timer.

    Errors (:class:`RecordingIOError`, :class:`RecordingFormatError`) are sent as
    ``on_error`` after the events before the bad line.

    Marble diagram (events recorded at t=100.0, 100.5, 102.0)::

        replay(path, speed=1.0):   a-b--c|        (0 s, 0.5 s, 2 s after subscribing)
        replay(path, speed=2.0):   ab-c|
        replay(path):              (abc|)

    Raises:
        ValueError: ``speed`` is not positive.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be positive (or None for as fast as possible), got {speed!r}")
    name = os.fspath(path)

    def subscribe(
        observer: abc.ObserverBase[LensEvent], sub_scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        lock = threading.RLock()
        closed = False
        handle: IO[str] | None = None
        records: Iterator[LensEvent] = iter(())

        def close() -> None:
            nonlocal closed
            with lock:
                closed = True
                if handle is not None:
                    handle.close()

        def fail(error: Exception) -> None:
            close()
            observer.on_error(error)

        def next_event() -> LensEvent | None:
            try:
                return next(records, None)
            except RecordingError as error:
                fail(error)
                raise _Stop from None
            except Exception as error:
                # Reading a file is rxlens's job, not the subscriber's: whatever it raises ends
                # the replay with on_error, never the (timer) thread it runs on.
                fail(RecordingError(f"{name}: cannot read: {type(error).__name__}: {error}"))
                raise _Stop from None

        def run_fast(_: abc.SchedulerBase, __: Any = None) -> None:
            with lock:
                try:
                    while not closed:
                        event = next_event()
                        if event is None:
                            close()
                            observer.on_completed()
                            return
                        observer.on_next(event)
                except _Stop:
                    return

        timer = SerialDisposable()
        first_at = 0.0
        start = 0.0
        sched = scheduler or sub_scheduler

        def run_paced(s: abc.SchedulerBase, pending: LensEvent | None) -> None:
            assert speed is not None
            with lock:
                try:
                    event: LensEvent | None = pending
                    while event is not None and not closed:
                        due = start + (event.received_at - first_at) / speed - _now(s)
                        if due > 0:
                            # At most _MAX_WAIT at a time: the next call re-measures.
                            wait = min(due, _MAX_WAIT)
                            timer.disposable = s.schedule_relative(wait, run_paced, event)
                            return
                        observer.on_next(event)
                        event = next_event()
                    if event is None and not closed:
                        close()
                        observer.on_completed()
                except _Stop:
                    return

        try:
            # Closed by close(): on completion, error or disposal, whichever comes first.
            handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            observer.on_error(RecordingIOError(f"cannot open recording {name!r}: {exc}"))
            return Disposable()
        records = read_records(handle, name)

        if speed is None:
            runner = sched or CurrentThreadScheduler.singleton()
            with lock:  # a threaded scheduler must not run before the timer is stored
                timer.disposable = runner.schedule(run_fast)
        else:
            runner = sched or TimeoutScheduler.singleton()
            try:
                first = next_event()
            except _Stop:
                return Disposable()
            if first is None:
                close()
                observer.on_completed()
                return Disposable()
            first_at = first.received_at
            start = _now(runner)
            # Under the lock: on a threaded scheduler the first action may otherwise run and
            # store its follow-up timer before this assignment, which would then dispose it.
            with lock:
                timer.disposable = runner.schedule(run_paced, first)
        return CompositeDisposable(timer, Disposable(close))

    return Observable(subscribe)


class _Stop(Exception):
    """Internal: the replay failed and has already told its observer."""


_EPOCH = datetime.fromtimestamp(0, timezone.utc)


def _now(scheduler: abc.SchedulerBase) -> float:
    now = scheduler.now
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return (now - _EPOCH).total_seconds()


__all__ = [
    "FORMAT_VERSION",
    "MAX_LINE_CHARS",
    "MAX_RECEIVED_AT",
    "StrPath",
    "RecordingError",
    "RecordingFormatError",
    "RecordingIOError",
    "decode_record",
    "encode_record",
    "open_for_writing",
    "read_recording",
    "replay",
]
