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

import json
import math
import os
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import CurrentThreadScheduler, TimeoutScheduler

from rxlens.errors import RecordedSessionError, RxLensError
from rxlens.events import (
    SESSION_FAILED,
    LensEvent,
    SessionFailed,
    from_payload,
    tag_session,
    to_json,
)

#: The version written in every record's ``v`` field.
FORMAT_VERSION = 1

#: The latest ``received_at`` a record may hold: 9999-12-31T23:59:59Z in epoch seconds.
MAX_RECEIVED_AT = 253_402_300_799.0

# The longest single wait of a paced replay (seconds); a longer gap is waited out in steps, so
# no gap or speed can overflow a timer (threading.TIMEOUT_MAX, datetime's range).
_MAX_WAIT = 3600.0

StrPath = str | os.PathLike[str]


class RecordingError(RxLensError):
    """A recording cannot be written or read."""


class RecordingFormatError(RecordingError, ValueError):
    """A line of a recording is not a valid record (the message names the file and line).

    ``line`` is the line's number (from 1) when the error comes from reading a file.
    """

    line: int | None = None


class RecordingIOError(RecordingError, OSError):
    """A recording file cannot be opened, written or read."""


# --- one record --------------------------------------------------------------------------------


def encode_record(event: LensEvent) -> str:
    """One record (a line of JSON, without the newline) for ``event``.

    ``raw`` is the frame text the event was parsed from; an event built in code (empty
    ``raw``) is stored as its JSON envelope instead.

    Raises:
        RecordingError: ``event`` is not a :class:`~rxlens.events.LensEvent`.
    """
    if not isinstance(event, LensEvent):
        raise RecordingError(f"a recording holds Lens events, got {type(event).__name__}")
    raw = event.raw or json.dumps(to_json(event), separators=(",", ":"))
    record = {
        "v": FORMAT_VERSION,
        "id": event.id,
        "received_at": event.received_at,
        "session_id": event.session_id,
        "type": event.type,
        "raw": raw,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def decode_record(line: str, where: str = "record") -> LensEvent:
    """The event one record describes, with its recorded ``id``, ``received_at``, ``session_id``.

    ``where`` (such as ``"rec.jsonl:12"``) prefixes error messages.

    Raises:
        RecordingFormatError: the line is not a version-1 record.
    """
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise RecordingFormatError(f"{where}: not JSON ({exc})") from None
    except RecursionError:
        raise RecordingFormatError(f"{where}: nested too deep to read") from None
    if not isinstance(record, dict):
        raise RecordingFormatError(f"{where}: a record is a JSON object")
    version = record.get("v")
    if version != FORMAT_VERSION:
        raise RecordingFormatError(
            f"{where}: unknown recording version {version!r} (this rxlens reads {FORMAT_VERSION})"
        )
    raw = record.get("raw")
    event_id = record.get("id")
    received_at = record.get("received_at")
    session_id = record.get("session_id")
    if (
        not isinstance(raw, str)
        or not (event_id is None or isinstance(event_id, str))
        or isinstance(received_at, bool)
        or not isinstance(received_at, (int, float))
        or not (session_id is None or isinstance(session_id, str))
    ):
        raise RecordingFormatError(
            f"{where}: a record needs raw (str), id (str|null), received_at (number) "
            "and session_id (str|null)"
        )
    # json reads Infinity and NaN, and 1e300 is a number: a time replay cannot wait for.
    when = float(received_at)
    if not (math.isfinite(when) and 0.0 <= when <= MAX_RECEIVED_AT):
        raise RecordingFormatError(
            f"{where}: received_at {received_at!r} is not a time (epoch seconds from 0 to "
            f"{MAX_RECEIVED_AT:.0f})"
        )
    try:
        event = from_payload(raw, id=event_id, received_at=when)
    except RecursionError:
        raise RecordingFormatError(f"{where}: raw is nested too deep to read") from None
    if event.type == SESSION_FAILED:
        event = _session_failed(event)
    if session_id is not None:
        event = tag_session(event, session_id)
    return event


def _session_failed(event: LensEvent) -> SessionFailed:
    data = event.event_data if isinstance(event.event_data, dict) else {}
    error = RecordedSessionError(str(data.get("error_type", "")), str(data.get("message", "")))
    return SessionFailed(
        error=error,
        event_data=event.event_data,
        session_id=event.session_id,
        id=event.id,
        received_at=event.received_at,
        raw=event.raw,
    )


# --- files -------------------------------------------------------------------------------------


def open_for_writing(path: StrPath, *, append: bool = False) -> IO[str]:
    """Open ``path`` for writing records; a new file is readable by its owner only (0600).

    An existing file keeps its permissions; ``append=False`` empties it first.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise RecordingIOError(f"cannot open {os.fspath(path)!r} for recording: {exc}") from exc
    return open(fd, "w", encoding="utf-8", newline="")


def read_recording(path: StrPath) -> Iterator[LensEvent]:
    """Yield the events of a recording, in order (a plain iterator, for scripts and tests).

    Raises:
        RecordingIOError: the file cannot be opened or read.
        RecordingFormatError: a line other than a torn last line is not a valid record.
    """
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115 (closed by `with` below)
    except OSError as exc:
        raise RecordingIOError(f"cannot open recording {os.fspath(path)!r}: {exc}") from exc
    with handle:
        yield from _records(handle, os.fspath(path))


#: The longest record line read (characters): a 16 MiB event, JSON-escaped, with room to spare.
#: A longer line (a file that is not a recording, or a hostile one) is refused unread.
MAX_LINE_CHARS = 64 * 1024 * 1024


def _records(handle: IO[str], name: str) -> Iterator[LensEvent]:
    max_line = MAX_LINE_CHARS
    number = 0
    while True:
        try:
            line = handle.readline(max_line + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordingIOError(f"{name}:{number + 1}: cannot read: {exc}") from exc
        if not line:
            return
        number += 1
        if len(line) > max_line:
            error = RecordingFormatError(
                f"{name}:{number}: a line longer than {max_line} characters is not a record"
            )
            error.line = number
            raise error
        if not line.strip():
            continue
        try:
            yield decode_record(line, f"{name}:{number}")
        except RecordingFormatError as error:
            if line.endswith("\n"):
                error.line = number
                raise
            # A last line without its newline is a write cut short (a crash mid-line).
            warnings.warn(
                f"{name}:{number}: skipped a torn last line (the recording was cut short)",
                RuntimeWarning,
                stacklevel=2,
            )
            return


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
        records = _records(handle, name)

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
    "MAX_RECEIVED_AT",
    "RecordingError",
    "RecordingFormatError",
    "RecordingIOError",
    "decode_record",
    "encode_record",
    "open_for_writing",
    "read_recording",
    "replay",
]
