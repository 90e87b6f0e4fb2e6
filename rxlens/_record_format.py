"""The recording format (version 1, documented in :mod:`rxlens.recording`): one record, a file.

It sits below the operators so that :func:`rxlens.operators.to_jsonl` can write records as a
stream passes; :mod:`rxlens.recording` adds reading a file back as an Observable (``replay``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from typing import IO

from rxlens.errors import (
    RecordedSessionError,
    RecordingError,
    RecordingFormatError,
    RecordingIOError,
)
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

StrPath = str | os.PathLike[str]


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


def read_recording(path: StrPath, *, max_line_chars: int | None = None) -> Iterator[LensEvent]:
    """Yield the events of a recording, in order (a plain iterator, for scripts and tests).

    A line longer than ``max_line_chars`` (default :data:`MAX_LINE_CHARS`) is refused unread.

    Raises:
        RecordingIOError: the file cannot be opened or read.
        RecordingFormatError: a line other than a torn last line is not a valid record.
    """
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115 (closed by `with` below)
    except OSError as exc:
        raise RecordingIOError(f"cannot open recording {os.fspath(path)!r}: {exc}") from exc
    with handle:
        yield from records(handle, os.fspath(path), max_line_chars)


#: The longest record line read (characters): a 16 MiB event, JSON-escaped, with room to spare.
#: A longer line (a file that is not a recording, or a hostile one) is refused unread.
MAX_LINE_CHARS = 64 * 1024 * 1024


def records(
    handle: IO[str], name: str, max_line_chars: int | None = None
) -> Iterator[LensEvent]:
    """The events of an open recording (``name`` prefixes error messages)."""
    max_line = MAX_LINE_CHARS if max_line_chars is None else max_line_chars
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


__all__ = [
    "FORMAT_VERSION",
    "MAX_LINE_CHARS",
    "MAX_RECEIVED_AT",
    "StrPath",
    "decode_record",
    "encode_record",
    "open_for_writing",
    "read_recording",
    "records",
]
