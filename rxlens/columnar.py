"""Load a recording straight into columns: a DataFrame without one event object per row.

Analysing a long recording (a million events) through the typed path costs two
``json.loads`` per line, one :class:`~rxlens.events.LensEvent` per row and a Python object per
cell: slow, and several times the file's size in memory. An analysis needs columns: time,
session, label, scores. :func:`load_recording` reads the recording in chunks of lines, decodes
each chunk's records in one call (with ``orjson`` when it is installed, else ``json``), keeps
only the rows the filters let through (type, session, time range; decided on the record
before its frame is decoded), decodes their frames in one more call, and builds columns:
repeated strings are shared and stored as categories, scores become one float column per
class. The typed path (:func:`rxlens.recording.read_recording`, :func:`rxlens.to_dataframe`)
stays for code that wants the event objects.

The rules of the format are those of :mod:`rxlens.recording`: a bad line is an error naming
the file and line, except a torn last line (no newline: a recording cut short), which is
skipped with a warning.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import chain
from typing import IO, Any, Literal

from rxlens.recording import (
    FORMAT_VERSION,
    RecordingFormatError,
    RecordingIOError,
    StrPath,
)
from rxlens.sinks import MissingDependency

#: The columns every frame has, in order (``score.<class>`` columns follow, one per class).
COLUMNS = (
    "received_at",
    "session_id",
    "id",
    "type",
    "text",
    "query_timestamp",
    "sensor_timestamp",
    "read_index",
)

#: Bytes read per call: large reads, without holding the whole file.
CHUNK_BYTES = 8 << 20

Loads = Callable[[bytes | str], Any]
_NAN = math.nan


def load_recording(
    path: StrPath,
    *,
    types: str | Iterable[str] | None = None,
    sessions: str | Iterable[str] | None = None,
    start: float | datetime | None = None,
    end: float | datetime | None = None,
    time: Literal["received", "sensor"] = "received",
    output: Literal["pandas", "polars"] = "pandas",
) -> Any:
    """A DataFrame of a recording, one row per event kept, built column by column.

    Filters (all optional, combined): ``types`` keeps events of these Lens types (e.g.
    ``"inference.result"``), by the record's ``type`` field; ``sessions`` keeps these
    session ids; ``start``/``end`` keep events with ``start <= t < end``, where ``t`` is the
    arrival time (``time="received"``) or the result's ``query_timestamp``
    (``time="sensor"``; rows without one are then left out). Bounds are epoch seconds or
    timezone-aware datetimes.

    Columns: ``received_at`` (``datetime64[ns, UTC]``), ``session_id``, ``type`` and ``text``
    (categories; ``text`` is the result text, which is the Machine State label), ``id``,
    ``query_timestamp`` (epoch seconds, float), ``sensor_timestamp`` (as sent: a video's
    ``"HH:MM:SS"`` or a number), ``read_index`` (nullable ``Int64``), then one float column
    ``score.<class>`` per class that any result scored (missing where a result did not score
    it). Values an event does not have are missing. Rows are in file order.

    ``output="polars"`` returns a polars DataFrame (polars must be installed).

    Raises:
        RecordingIOError: the file cannot be opened or read.
        RecordingFormatError: a line other than a torn last line is not a valid record.
        MissingDependency: pandas (or polars, for ``output="polars"``) is not installed.
        ValueError: a bad ``time`` or ``output``.
    """
    if time not in ("received", "sensor"):
        raise ValueError(f'time must be "received" or "sensor", got {time!r}')
    if output not in ("pandas", "polars"):
        raise ValueError(f'output must be "pandas" or "polars", got {output!r}')
    pd = _pandas()
    wanted_types = _name_set(types)
    wanted_sessions = _name_set(sessions)
    low = _epoch(start)
    high = _epoch(end)
    loads = _loads()
    name = os.fspath(path)

    builder = _Columns()
    # One loop with everything local: this is the hot path (a million rows), where a method
    # call or an attribute lookup per row shows.
    received_at = builder.received_at.append
    session_ids = builder.session_id.append
    ids = builder.id.append
    kinds = builder.type.append
    texts = builder.text.append
    query_timestamps = builder.query_timestamp.append
    sensor_timestamps = builder.sensor_timestamp.append
    read_indexes = builder.read_index.append
    columns = builder.scores
    share = builder.shared.setdefault
    by_sensor = time == "sensor"
    by_received = time == "received" and (low is not None or high is not None)
    nan = _NAN
    row = 0
    number = 0
    for line in chain.from_iterable(_chunks(name)):
        number += 1
        try:
            record = loads(line)
        except ValueError as exc:
            if not line.strip():
                continue  # a blank line
            raise RecordingFormatError(f"{name}:{number}: not JSON ({exc})") from None
        if type(record) is not dict or record.get("v") != FORMAT_VERSION:
            _bad_record(record, number, name)
        kind = record.get("type")
        session = record.get("session_id")
        if wanted_types is not None and kind not in wanted_types:
            continue
        if wanted_sessions is not None and session not in wanted_sessions:
            continue
        at = record.get("received_at")
        raw = record.get("raw")
        event_id = record.get("id")
        if (
            (type(at) is not float and type(at) is not int)
            or type(raw) is not str
            or not (event_id is None or type(event_id) is str)
            or not (session is None or type(session) is str)
        ):
            _bad_record(record, number, name)
        if by_received and ((low is not None and at < low) or (high is not None and at >= high)):
            continue
        try:
            frame = loads(raw)
        except ValueError:
            frame = None  # a malformed frame: kept as a row with its record's type
        text = None
        query_ts = nan
        sensor = None
        read_index = None
        scores = None
        data = frame.get("event_data") if type(frame) is dict else None
        if type(data) is dict:
            response = data.get("response")
            if type(response) is str:
                text = response
            elif type(response) is list and response:
                head = response[0]
                if type(head) is str:
                    text = head
                if len(response) > 1 and type(response[1]) is dict:
                    scores = response[1]
            meta = data.get("query_metadata")
            if type(meta) is dict:
                inner = meta.get("query_metadata")
                if type(inner) is not dict:
                    inner = meta
                value = inner.get("query_timestamp", meta.get("query_timestamp"))
                if type(value) is float or type(value) is int:
                    query_ts = float(value)
                sensor = meta.get("sensor_timestamp")
                value = inner.get("read_index", meta.get("read_index"))
                if type(value) is int:
                    read_index = value
            if sensor is None:
                sensor = data.get("sensor_timestamp")
        if by_sensor and (
            query_ts != query_ts
            or (low is not None and query_ts < low)
            or (high is not None and query_ts >= high)
        ):
            continue
        received_at(at)
        session_ids(None if session is None else share(session, session))
        ids(event_id)
        kinds(share(kind, kind) if type(kind) is str else None)
        texts(None if text is None else share(text, text))
        query_timestamps(query_ts)
        sensor_timestamps(sensor)
        read_indexes(read_index)
        filled = 0
        if scores is not None:
            for label, value in scores.items():
                if type(value) is float or type(value) is int:
                    column = columns.get(label)
                    if column is None:
                        column = columns[label] = [nan] * row
                    column.append(float(value))
                    filled += 1
        row += 1
        if filled != len(columns):
            for column in columns.values():
                if len(column) < row:
                    column.append(nan)
    return builder.frame(pd, output)


# --- reading -----------------------------------------------------------------------------------


def _chunks(name: str) -> Iterator[list[bytes]]:
    """The file's lines, a few megabytes at a time; a torn last line is left out (warned)."""
    try:
        handle: IO[bytes] = open(name, "rb")  # noqa: SIM115 (closed by `with` below)
    except OSError as exc:
        raise RecordingIOError(f"cannot open recording {name!r}: {exc}") from exc
    with handle:
        number = 0
        while True:
            try:
                lines = handle.readlines(CHUNK_BYTES)
            except OSError as exc:
                raise RecordingIOError(f"{name}:{number + 1}: cannot read: {exc}") from exc
            if not lines:
                return
            number += len(lines)
            last = lines[-1]
            if not last.endswith(b"\n") and not _valid_record_line(last):
                # Only the file's last line can lack its newline: a write cut short.
                lines[-1] = b""  # a blank line is skipped; the numbering stays right
                if last.strip():
                    warnings.warn(
                        f"{name}:{number}: skipped a torn last line (the recording was cut "
                        "short)",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            yield lines


def _valid_record_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("v") == FORMAT_VERSION


def _bad_record(record: Any, number: int, name: str) -> None:
    if type(record) is not dict:
        raise RecordingFormatError(f"{name}:{number}: a record is a JSON object")
    version = record.get("v")
    if version != FORMAT_VERSION:
        raise RecordingFormatError(
            f"{name}:{number}: unknown recording version {version!r} "
            f"(this rxlens reads {FORMAT_VERSION})"
        )
    raise RecordingFormatError(
        f"{name}:{number}: a record needs raw (str), id (str|null), received_at (number) "
        "and session_id (str|null)"
    )


# --- building the columns ----------------------------------------------------------------------


class _Columns:
    """The column lists :func:`load_recording` fills, and the frame made of them."""

    def __init__(self) -> None:
        self.received_at: list[float] = []
        self.session_id: list[str | None] = []
        self.id: list[str | None] = []
        self.type: list[str | None] = []
        self.text: list[str | None] = []
        self.query_timestamp: list[float] = []
        self.sensor_timestamp: list[Any] = []
        self.read_index: list[int | None] = []
        self.scores: dict[str, list[float]] = {}
        #: One object per distinct string (labels, sessions, types repeat on every row).
        self.shared: dict[str, str] = {}

    def frame(self, pd: Any, output: str) -> Any:
        import numpy

        # Every column goes in as an array of its final type, and the lists are dropped as
        # soon as they are converted, so the peak holds one column twice at most.
        received = numpy.array(self.received_at, dtype="float64")
        self.received_at = []
        index = self.read_index
        missing = numpy.fromiter((v is None for v in index), dtype=bool, count=len(index))
        values = numpy.fromiter((0 if v is None else v for v in index), "int64", len(index))
        self.read_index = []
        columns: dict[str, Any] = {
            "received_at": pd.to_datetime(received, unit="s", utc=True),
            "session_id": pd.Categorical(self.session_id),
            "id": numpy.array(self.id, dtype=object),
            "type": pd.Categorical(self.type),
            "text": pd.Categorical(self.text),
            "query_timestamp": numpy.array(self.query_timestamp, dtype="float64"),
            "sensor_timestamp": numpy.array(self.sensor_timestamp, dtype=object),
            "read_index": pd.arrays.IntegerArray(values, missing),
        }
        for label in sorted(self.scores):
            columns[f"score.{label}"] = numpy.array(self.scores[label], dtype="float64")
        frame = pd.DataFrame(columns, copy=False)
        if output == "polars":
            try:
                polars = importlib.import_module("polars")
            except ImportError as exc:
                raise MissingDependency(
                    'load_recording(output="polars") needs polars: pip install polars'
                ) from exc
            return polars.from_pandas(frame)
        return frame


# --- helpers -----------------------------------------------------------------------------------


def _name_set(value: str | Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


def _epoch(value: float | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("time bounds must be epoch seconds or timezone-aware datetimes")
        return value.timestamp()
    return float(value)


def _loads() -> Loads:
    try:
        import orjson
    except ImportError:
        return json.loads
    loads: Loads = orjson.loads
    return loads


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise MissingDependency(
            "load_recording needs pandas, an optional extra: pip install 'rxlens[pandas]'"
        ) from exc
    return pandas


__all__ = ["COLUMNS", "load_recording"]
