"""The Lens event types: one frozen dataclass per frame type, and their JSON form.

This module says what a Lens event *is*; :mod:`rxlens._event_decoding` turns frames into these
and :mod:`rxlens.schemas` says which payloads are valid. It imports neither, so the schemas can
name the types without a cycle. Users import all of it from :mod:`rxlens.events`.

The payload fields of a typed event are declared twice on purpose: in its marshmallow schema
(the definition of a valid payload) and here, as dataclass fields (so that ``event.num_bytes``
has a type mypy can check). Nothing else lists them: ``_payload_fields`` is read off the
dataclass, and :mod:`rxlens._event_decoding` refuses to import when a dataclass and its schema
disagree on a field's name, order or type.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeGuard, TypeVar

from rxlens.errors import MalformedEventError

__all__ = [
    "HEARTBEAT",
    "INFERENCE_ERROR",
    "INFERENCE_RESULT",
    "MALFORMED",
    "MODIFY_RESULT",
    "SESSION_FAILED",
    "STREAM_END",
    "STREAM_START",
    "Heartbeat",
    "InferenceError",
    "InferenceResult",
    "LensEvent",
    "LogEvent",
    "MalformedEvent",
    "ModifyResult",
    "SessionFailed",
    "StreamEnd",
    "StreamStart",
    "UnknownEvent",
    "event_class",
    "tag_session",
    "to_json",
]

STREAM_START = "sse.stream.start"
HEARTBEAT = "sse.stream.heartbeat"
STREAM_END = "sse.stream.end"
INFERENCE_RESULT = "inference.result"
MODIFY_RESULT = "session.modify.result"
INFERENCE_ERROR = "inference.error"
#: The ``type`` of a :class:`MalformedEvent` (not a Lens type: the frame's own type, if it had
#: one, is in ``claimed_type``).
MALFORMED = "rxlens.malformed"
#: The ``type`` of a :class:`SessionFailed` event (an rxlens type, not a Lens one).
SESSION_FAILED = "rxlens.session.failed"

_E = TypeVar("_E", bound="LensEvent")


def _with_payload(cls: type[_E]) -> type[_E]:
    """Mark ``cls`` as a type with a schema: its positional fields are its payload fields.

    Applied on top of ``@dataclass`` (it needs the finished fields). The order is the
    declaration order, which must be the schema's (checked when decoding is imported).
    """
    cls._payload_fields = tuple(f.name for f in fields(cls) if f.init and not f.kw_only)
    return cls


# --- the events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LensEvent:
    """Base of every Lens event.

    All fields are keyword-only here; each subclass makes its own payload fields positional.
    ``event_data`` is the envelope's payload exactly as sent (unknown fields included).
    ``session_id`` comes from the payload for :class:`StreamStart` and :class:`Heartbeat`; for
    other events it is ``None`` until something (a merge of several sessions) sets it with
    :func:`dataclasses.replace`.
    """

    type: str = field(default="", kw_only=True)
    event_data: Any = field(default=None, kw_only=True, repr=False, hash=False)
    session_id: str | None = field(default=None, kw_only=True)
    id: str | None = field(default=None, kw_only=True)
    received_at: float = field(default_factory=time.time, kw_only=True, compare=False)
    raw: str = field(default="", kw_only=True, repr=False, compare=False)

    #: The fields the type's schema reads from ``event_data``, in the schema's order (set by
    #: ``_with_payload``; empty for the types without a schema).
    _payload_fields: ClassVar[tuple[str, ...]] = ()


@_with_payload
@dataclass(frozen=True, slots=True)
class StreamStart(LensEvent):
    """``sse.stream.start``: the first frame of every connection; a new ``reader_id`` each time."""

    type: str = field(default=STREAM_START, init=False)
    session_id: str | None = None
    reader_id: str | None = None

    def __post_init__(self) -> None:
        _fill_event_data(self)


@_with_payload
@dataclass(frozen=True, slots=True)
class Heartbeat(LensEvent):
    """``sse.stream.heartbeat``: a liveness signal sent every ~5 s while no data flows.

    ``session_status`` is kept as the server spells it (``"SESSION_STATUS_RUNNING"``,
    ``"LensSessionStatus.SESSION_STATUS_RUNNING"``, ``"3"``); an integer status becomes its string.
    """

    type: str = field(default=HEARTBEAT, init=False)
    session_id: str | None = None
    session_status: str | None = None
    num_messages: int | None = None
    num_bytes: int | None = None
    message_timeout: float | None = None

    def __post_init__(self) -> None:
        _fill_event_data(self)


@dataclass(frozen=True, slots=True)
class StreamEnd(LensEvent):
    """``sse.stream.end``: the server closes the stream gracefully.

    ``stats`` is the reader's statistics (``num_messages``, ``num_bytes``, ``sse_run_time``, ...)
    when the payload is an object, else ``None``. Any payload is accepted: missing the end of a
    stream over a payload quibble would be worse than any payload.
    """

    type: str = field(default=STREAM_END, init=False)
    stats: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.event_data is None and self.stats is not None:
            object.__setattr__(self, "event_data", dict(self.stats))


@_with_payload
@dataclass(frozen=True, slots=True)
class InferenceResult(LensEvent):
    """``inference.result``: the lens output.

    The payload varies by lens; the properties read every shape seen so far and return ``None``
    when the result has no such thing:

    - video (Activity Monitor): ``response=["text"]``, ``query_metadata.sensor_timestamp``;
    - CSV classification (Machine State): ``response=["LABEL", {"LABEL": 3, ...}]``, the window in
      ``query_metadata.query_metadata.{read_index, window_size}``;
    - embeddings: ``response=[[floats], [floats], ...]``.
    """

    type: str = field(default=INFERENCE_RESULT, init=False)
    response: Any = field(default=None, hash=False)
    query_id: str | None = None
    query_metadata: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _fill_event_data(self)

    @property
    def text(self) -> str | None:
        """The result text: ``response[0]`` (or ``response``) when it is a string."""
        response = self.response
        if isinstance(response, str):
            return response
        if isinstance(response, list) and response and isinstance(response[0], str):
            return response[0]
        return None

    @property
    def label(self) -> str | None:
        """The class label of a classifying lens (the same string as :attr:`text`)."""
        return self.text

    @property
    def scores(self) -> dict[str, float] | None:
        """Class scores, ``response[1]``, as floats (raw votes, percentages or 0-1 by source)."""
        response = self.response
        if not (isinstance(response, list) and len(response) >= 2):
            return None
        scores = response[1]
        if not isinstance(scores, dict) or not all(_is_number(v) for v in scores.values()):
            return None
        return {str(k): float(v) for k, v in scores.items()}

    @property
    def sensor_timestamp(self) -> str | float | None:
        """The sensor position of the result (a video's ``"HH:MM:SS"``).

        Sources put it under ``query_metadata`` or directly in the payload; both are read.
        """
        for where in (self.query_metadata, self.event_data):
            if isinstance(where, dict):
                value = where.get("sensor_timestamp")
                if isinstance(value, str):
                    return value
                if _is_number(value):
                    return float(value)
        return None

    @property
    def frame_ids(self) -> list[int] | None:
        """The video frames the result covers (``query_metadata.frame_ids``)."""
        value = self._meta("frame_ids")
        if isinstance(value, list) and all(_is_int(v) for v in value):
            return list(value)
        return None

    @property
    def read_index(self) -> int | None:
        """First row of the window a file-reading lens classified (absent in push mode)."""
        value = self._meta("read_index")
        return value if _is_int(value) else None

    @property
    def window_size(self) -> int | None:
        """Rows in that window: the result covers ``[read_index, read_index + window_size)``."""
        value = self._meta("window_size")
        return value if _is_int(value) else None

    @property
    def query_timestamp(self) -> float | None:
        """Server time (epoch seconds) of the query, when the lens reports it."""
        value = self._meta("query_timestamp")
        return float(value) if _is_number(value) else None

    @property
    def embedding(self) -> list[list[float]] | None:
        """The channels of an embedding lens: ``response`` when it is a list of number lists."""
        response = self.response
        if not (isinstance(response, list) and response):
            return None
        if not all(isinstance(ch, list) and all(_is_number(v) for v in ch) for ch in response):
            return None
        return [[float(v) for v in ch] for ch in response]

    def _meta(self, key: str) -> Any:
        # Metadata sits in query_metadata, or one level deeper (query_metadata.query_metadata)
        # for file-reading lenses; the deeper one is the more specific.
        outer = self.query_metadata
        if not isinstance(outer, dict):
            return None
        inner = outer.get("query_metadata")
        if isinstance(inner, dict) and key in inner:
            return inner[key]
        return outer.get(key)


@_with_payload
@dataclass(frozen=True, slots=True)
class ModifyResult(LensEvent):
    """``session.modify.result``: a training acknowledgement (``query_metadata.class_name``)."""

    type: str = field(default=MODIFY_RESULT, init=False)
    query_metadata: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _fill_event_data(self)

    @property
    def class_name(self) -> str | None:
        """The class the acknowledged example was added to."""
        qm = self.query_metadata
        value = qm.get("class_name") if isinstance(qm, dict) else None
        return value if isinstance(value, str) else None


@_with_payload
@dataclass(frozen=True, slots=True)
class InferenceError(LensEvent):
    """``inference.error``: the lens reports failed queries (``error_messages``)."""

    type: str = field(default=INFERENCE_ERROR, init=False)
    error_messages: list[str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _fill_event_data(self)


@dataclass(frozen=True, slots=True)
class LogEvent(LensEvent):
    """``log.*`` (``log.info``, ...): a server log line; the payload shape is not documented."""

    type: str = "log.info"
    event_data: Any = field(default=None, hash=False)

    @property
    def level(self) -> str:
        """The part of the type after ``log.`` (``"info"``)."""
        return self.type.partition(".")[2]

    @property
    def message(self) -> str | None:
        """The payload's ``message`` (or the payload itself when it is a string)."""
        data = self.event_data
        if isinstance(data, str):
            return data
        value = data.get("message") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class UnknownEvent(LensEvent):
    """Any type rxlens has no class for (``error_message``, ``frame.processed``, ...), untouched."""

    type: str = ""
    event_data: Any = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class MalformedEvent(LensEvent):
    """A frame that is not a valid Lens event, kept so that it is never lost silently.

    ``raw`` is the frame's data text, ``errors`` the validation messages (marshmallow's shape:
    field name to list of messages; ``"_json"`` for a frame that is not JSON, ``"_schema"`` for a
    payload that is not an object). ``claimed_type`` is the envelope's ``type`` when it had a
    string one, and ``event_data`` its payload when it had one.
    """

    type: str = field(default=MALFORMED, init=False)
    raw: str = field(default="", compare=True)
    errors: Mapping[str, Any] = field(default_factory=dict, hash=False)
    claimed_type: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class SessionFailed(LensEvent):
    """In a merged stream: the session ``session_id`` failed with ``error`` and has ended.

    Emitted by :func:`rxlens.operators.merge_sessions` in place of the session's ``on_error``,
    so that one failing session never ends the others and is never silent. ``event_data`` holds
    the error's type name and message, so a recording keeps the failure (``rxlens.replay``
    rebuilds it, with ``error`` a :class:`~rxlens.errors.RecordedSessionError`). It has no
    ``label`` or ``text``, so the aggregates skip it.
    """

    type: str = field(default=SESSION_FAILED, init=False)
    error: BaseException | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.event_data is None and self.error is not None:
            data = {"error_type": type(self.error).__name__, "message": str(self.error)}
            object.__setattr__(self, "event_data", data)
        if not self.raw:
            # The frame this event would have been: lets a recording store it like any other.
            envelope = {"type": self.type, "event_data": self.event_data}
            object.__setattr__(self, "raw", json.dumps(envelope, separators=(",", ":")))


def _fill_event_data(event: LensEvent) -> None:
    # An event built by hand (tests, replays) gets the payload its fields describe, so that it
    # equals the parsed event and serialises back; parsed events already carry the payload.
    if event.event_data is None:
        data = {
            name: getattr(event, name)
            for name in event._payload_fields
            if getattr(event, name) is not None
        }
        object.__setattr__(event, "event_data", data)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: Lens type -> its class, for the types with a class of their own (``log.*`` and the rest are
#: :func:`event_class`'s business).
_CLASSES: dict[str, type[LensEvent]] = {
    STREAM_START: StreamStart,
    HEARTBEAT: Heartbeat,
    STREAM_END: StreamEnd,
    INFERENCE_RESULT: InferenceResult,
    MODIFY_RESULT: ModifyResult,
    INFERENCE_ERROR: InferenceError,
}


def event_class(lens_type: str) -> type[LensEvent]:
    """The class a payload of ``lens_type`` loads into."""
    cls = _CLASSES.get(lens_type)
    if cls is not None:
        return cls
    return LogEvent if lens_type.startswith("log.") else UnknownEvent


def tag_session(event: LensEvent, session_id: str) -> LensEvent:
    """``event`` with ``session_id`` set (the same object when it already has that id)."""
    if event.session_id == session_id:
        return event
    return dataclasses.replace(event, session_id=session_id)


# --- the JSON form -----------------------------------------------------------------------------
# Here rather than with the decoding because rxlens.schemas dumps through to_json, and the
# schemas sit below the decoding (which derives its fast path from them).


def _loads(text: str) -> tuple[Any, dict[str, list[str]] | None]:
    """JSON-decode a frame's data; accept the ``b'...'`` wrapper the server once sent."""
    try:
        return json.loads(text), None
    except ValueError as exc:
        error = exc
    except RecursionError:
        return None, {"_json": ["JSON nested too deeply"]}
    stripped = text.strip()
    if (
        len(stripped) >= 3
        and stripped[0] == "b"
        and stripped[1] in "'\""
        and stripped[-1] == stripped[1]
    ):
        # A Python bytes repr around the JSON (May 2025). literal_eval only builds literals.
        try:
            inner = ast.literal_eval(stripped)
            if isinstance(inner, bytes):
                return json.loads(inner.decode("utf-8")), None
        except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
            error = exc if isinstance(exc, ValueError) else ValueError(str(exc))
    return None, {"_json": [f"not JSON: {error}"]}


def to_json(event: LensEvent) -> dict[str, Any]:
    """The event's JSON envelope ``{"type", "event_data"}``.

    ``event_data`` is the payload as received, with the typed fields written over it (so a
    :func:`dataclasses.replace` shows), a field left ``None`` that the payload never had
    staying absent. Unknown payload fields come back unchanged. A :class:`MalformedEvent` gives
    the object its frame held, or raises :class:`~rxlens.errors.MalformedEventError` when the
    frame held no JSON object.
    """
    if isinstance(event, MalformedEvent):
        decoded, _ = _loads(event.raw)
        if isinstance(decoded, dict):
            return decoded
        raise MalformedEventError("the frame holds no JSON object", event.raw, event.errors)
    data = event.event_data
    if event._payload_fields:
        merged = dict(data) if isinstance(data, dict) else {}
        for name in event._payload_fields:
            value = getattr(event, name)
            if value is not None or name in merged:
                merged[name] = value
        data = merged
    elif isinstance(event, StreamEnd) and event.stats is not None:
        data = dict(event.stats)
    return {"type": event.type, "event_data": data}
