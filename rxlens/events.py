"""Typed Lens events: every SSE frame of a Lens session as a frozen dataclass.

A Lens frame is an SSE ``message`` whose data is a JSON envelope ``{"type": ..., "event_data":
...}``. :func:`parse_event` turns one :class:`rxlens.sse.Event` into one :class:`LensEvent`
subclass chosen by the envelope's ``type``:

=========================  ======================
``sse.stream.start``       :class:`StreamStart`
``sse.stream.heartbeat``   :class:`Heartbeat`
``sse.stream.end``         :class:`StreamEnd`
``inference.result``       :class:`InferenceResult`
``session.modify.result``  :class:`ModifyResult`
``inference.error``        :class:`InferenceError`
``log.*``                  :class:`LogEvent`
anything else              :class:`UnknownEvent`
=========================  ======================

A frame that is not JSON, is not an object, has no string ``type`` or fails its type's schema
becomes a :class:`MalformedEvent` (or raises, or is skipped: ``on_malformed``). Nothing is lost:
every event keeps the frame's text in ``raw`` and the envelope's ``event_data`` as sent, including
fields rxlens does not know.

Validation is the marshmallow schemas of :mod:`rxlens.schemas`. Running marshmallow on every
frame would cost several times the JSON decoding itself, so each type also has a structural check
here that accepts only payloads the schema is known to accept with the same result (exact Python
types, nothing to coerce). Anything the check is unsure of goes to marshmallow, which decides and
words the errors. A property test holds the two paths equal.

Identity: ``id`` is the SSE id set by the frame's own block (``Event.id``), ``None`` when the
block had none or an empty one. The stream's ``last_event_id`` is deliberately not used as a
fallback: every frame after an ``id:`` shares it, so it would make distinct frames look alike.

Equality compares the Lens content (type, payload, typed fields), ``id`` and ``session_id``; not
``received_at`` nor ``raw``, so a frame received twice (after a resume) compares equal, and an
event built by hand equals the parsed one.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard

from rxlens.errors import MalformedEventError

if TYPE_CHECKING:
    from rxlens.sse import Event

__all__ = [
    "HEARTBEAT",
    "INFERENCE_ERROR",
    "INFERENCE_RESULT",
    "MALFORMED",
    "MODIFY_RESULT",
    "STREAM_END",
    "STREAM_START",
    "Heartbeat",
    "InferenceError",
    "InferenceResult",
    "LensEvent",
    "LogEvent",
    "MalformedEvent",
    "ModifyResult",
    "OnMalformed",
    "StreamEnd",
    "StreamStart",
    "UnknownEvent",
    "from_payload",
    "parse_event",
    "to_json",
]

logger = logging.getLogger("rxlens.events")

STREAM_START = "sse.stream.start"
HEARTBEAT = "sse.stream.heartbeat"
STREAM_END = "sse.stream.end"
INFERENCE_RESULT = "inference.result"
MODIFY_RESULT = "session.modify.result"
INFERENCE_ERROR = "inference.error"
#: The ``type`` of a :class:`MalformedEvent` (not a Lens type: the frame's own type, if it had
#: one, is in ``claimed_type``).
MALFORMED = "rxlens.malformed"

OnMalformed = Literal["emit", "raise", "skip"]


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

    #: Names of the fields the type's schema reads from ``event_data`` (see :func:`to_json`).
    _payload_fields: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True)
class StreamStart(LensEvent):
    """``sse.stream.start``: the first frame of every connection; a new ``reader_id`` each time."""

    type: str = field(default=STREAM_START, init=False)
    session_id: str | None = None
    reader_id: str | None = None

    _payload_fields: ClassVar[tuple[str, ...]] = ("session_id", "reader_id")

    def __post_init__(self) -> None:
        _fill_event_data(self)


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

    _payload_fields: ClassVar[tuple[str, ...]] = (
        "session_id",
        "session_status",
        "num_messages",
        "num_bytes",
        "message_timeout",
    )

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

    _payload_fields: ClassVar[tuple[str, ...]] = ("response", "query_id", "query_metadata")

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


@dataclass(frozen=True, slots=True)
class ModifyResult(LensEvent):
    """``session.modify.result``: a training acknowledgement (``query_metadata.class_name``)."""

    type: str = field(default=MODIFY_RESULT, init=False)
    query_metadata: Mapping[str, Any] | None = field(default=None, hash=False)

    _payload_fields: ClassVar[tuple[str, ...]] = ("query_metadata",)

    def __post_init__(self) -> None:
        _fill_event_data(self)

    @property
    def class_name(self) -> str | None:
        """The class the acknowledged example was added to."""
        qm = self.query_metadata
        value = qm.get("class_name") if isinstance(qm, dict) else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class InferenceError(LensEvent):
    """``inference.error``: the lens reports failed queries (``error_messages``)."""

    type: str = field(default=INFERENCE_ERROR, init=False)
    error_messages: list[str] | None = field(default=None, hash=False)

    _payload_fields: ClassVar[tuple[str, ...]] = ("error_messages",)

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


# --- the structural fast path ------------------------------------------------------------------
# Each check returns the typed keyword arguments when the payload is plainly valid, None when
# marshmallow must decide. Exact type tests (type(x) is int) because the schemas reject bool and
# coerce strings, which only marshmallow should do.

_Fast = Callable[[Any], "dict[str, Any] | None"]


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fast_stream_start(data: Any) -> dict[str, Any] | None:
    if type(data) is not dict:
        return None
    session_id = data.get("session_id")
    reader_id = data.get("reader_id")
    if (session_id is None or type(session_id) is str) and (
        reader_id is None or type(reader_id) is str
    ):
        return {"session_id": session_id, "reader_id": reader_id}
    return None


def _fast_heartbeat(data: Any) -> dict[str, Any] | None:
    if type(data) is not dict:
        return None
    get = data.get
    session_id = get("session_id")
    status = get("session_status")
    num_messages = get("num_messages")
    num_bytes = get("num_bytes")
    timeout = get("message_timeout")
    # Inline tests, not helper calls: this runs for every heartbeat.
    if not (
        (session_id is None or type(session_id) is str)
        and (status is None or type(status) is str)
        and (num_messages is None or type(num_messages) is int)
        and (num_bytes is None or type(num_bytes) is int)
    ):
        return None
    if timeout is not None:
        if type(timeout) is int:
            timeout = float(timeout)
        elif type(timeout) is not float or not math.isfinite(timeout):
            return None
    return {
        "session_id": session_id,
        "session_status": status,
        "num_messages": num_messages,
        "num_bytes": num_bytes,
        "message_timeout": timeout,
    }


def _fast_stream_end(data: Any) -> dict[str, Any] | None:
    return {"stats": data if type(data) is dict else None}


def _fast_inference_result(data: Any) -> dict[str, Any] | None:
    if type(data) is not dict or "response" not in data:
        return None
    query_id = data.get("query_id")
    qm = data.get("query_metadata")
    if (query_id is None or type(query_id) is str) and (qm is None or type(qm) is dict):
        return {"response": data["response"], "query_id": query_id, "query_metadata": qm}
    return None


def _fast_modify_result(data: Any) -> dict[str, Any] | None:
    if type(data) is not dict:
        return None
    qm = data.get("query_metadata")
    return {"query_metadata": qm} if qm is None or type(qm) is dict else None


def _fast_inference_error(data: Any) -> dict[str, Any] | None:
    if type(data) is not dict:
        return None
    messages = data.get("error_messages")
    if messages is None:
        return {"error_messages": None}
    if type(messages) is list and all(type(m) is str for m in messages):
        return {"error_messages": list(messages)}
    return None


_Maker = Callable[[dict[str, Any], Any, "str | None", float, str], LensEvent]


def _maker(cls: type[LensEvent]) -> _Maker:
    """A constructor of ``cls`` for payloads the structural check passed.

    It writes the slots directly instead of calling the dataclass ``__init__``, whose frozen
    ``object.__setattr__`` per field and keyword handling cost more than the JSON decoding of a
    frame. It skips ``__post_init__``, which only fills ``event_data`` when it is missing, and
    parsed events always have it.
    """
    own = ("type", "event_data", "id", "received_at", "raw")
    lens_type = cls.__dataclass_fields__["type"].default
    setters = tuple(
        (f.name, getattr(cls, f.name).__set__) for f in fields(cls) if f.name not in own
    )
    set_type, set_data, set_id, set_at, set_raw = (getattr(cls, name).__set__ for name in own)
    new = object.__new__

    def make(
        typed: dict[str, Any], data: Any, event_id: str | None, received_at: float, raw: str
    ) -> LensEvent:
        obj = new(cls)
        set_type(obj, lens_type)
        set_data(obj, data)
        set_id(obj, event_id)
        set_at(obj, received_at)
        set_raw(obj, raw)
        get = typed.get
        for name, setter in setters:
            setter(obj, get(name))
        return obj

    return make


#: Lens type -> (class, structural check, constructor). Schemas: rxlens.schemas.SCHEMAS.
_TYPED: dict[str, tuple[type[LensEvent], _Fast, _Maker]] = {
    lens_type: (cls, fast, _maker(cls))
    for lens_type, cls, fast in (
        (STREAM_START, StreamStart, _fast_stream_start),
        (HEARTBEAT, Heartbeat, _fast_heartbeat),
        (STREAM_END, StreamEnd, _fast_stream_end),
        (INFERENCE_RESULT, InferenceResult, _fast_inference_result),
        (MODIFY_RESULT, ModifyResult, _fast_modify_result),
        (INFERENCE_ERROR, InferenceError, _fast_inference_error),
    )
}


def event_class(lens_type: str) -> type[LensEvent]:
    """The class a payload of ``lens_type`` loads into."""
    entry = _TYPED.get(lens_type)
    if entry is not None:
        return entry[0]
    return LogEvent if lens_type.startswith("log.") else UnknownEvent


# --- decoding ----------------------------------------------------------------------------------


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


def _build(payload: Any, raw: str, event_id: str | None, received_at: float) -> LensEvent:
    """Turn a decoded payload into its event (never raises)."""
    if type(payload) is dict:
        lens_type = payload.get("type")
        if type(lens_type) is str:
            data = payload.get("event_data")
            entry = _TYPED.get(lens_type)
            if entry is not None:
                typed = entry[1](data)
                if typed is not None:
                    return entry[2](typed, data, event_id, received_at, raw)
            elif lens_type.startswith("log."):
                return LogEvent(lens_type, data, id=event_id, received_at=received_at, raw=raw)
            else:
                return UnknownEvent(lens_type, data, id=event_id, received_at=received_at, raw=raw)
    return _build_slow(payload, raw, event_id, received_at)


def _build_slow(payload: Any, raw: str, event_id: str | None, received_at: float) -> LensEvent:
    """Validate with marshmallow: the authority on what is valid, and the error messages."""
    from marshmallow import ValidationError

    from rxlens.schemas import load_fields

    try:
        cls, kwargs = load_fields(payload)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        claimed = payload.get("type") if isinstance(payload, dict) else None
        data = payload.get("event_data") if isinstance(payload, dict) else None
        return MalformedEvent(
            raw,
            messages,
            claimed_type=claimed if isinstance(claimed, str) else None,
            event_data=data,
            id=event_id,
            received_at=received_at,
        )
    data = payload.get("event_data")
    return cls(**kwargs, event_data=data, id=event_id, received_at=received_at, raw=raw)


def from_payload(
    payload: Mapping[str, Any] | str,
    *,
    id: str | None = None,
    received_at: float | None = None,
) -> LensEvent:
    """Build the event for one envelope, given as a dict or as the frame's JSON text.

    Never raises on bad input: it returns a :class:`MalformedEvent`. For a dict, ``raw`` is its
    compact JSON. For replaying recordings and for tests.
    """
    when = time.time() if received_at is None else received_at
    if isinstance(payload, str):
        decoded, errors = _loads(payload)
        if errors is not None:
            return MalformedEvent(payload, errors, id=id, received_at=when)
        return _build(decoded, payload, id, when)
    try:
        raw = json.dumps(payload, separators=(",", ":"))
    except (TypeError, ValueError):
        raw = repr(payload)
    return _build(dict(payload) if not isinstance(payload, dict) else payload, raw, id, when)


def parse_event(
    event: Event,
    *,
    received_at: float | None = None,
    on_malformed: OnMalformed = "emit",
) -> LensEvent | None:
    """Decode one SSE event into its Lens event.

    ``received_at`` defaults to ``time.time()``. A bad frame is handled per ``on_malformed``:
    ``"emit"`` returns a :class:`MalformedEvent`, ``"raise"`` raises
    :class:`~rxlens.errors.MalformedEventError`, ``"skip"`` logs a warning on the
    ``rxlens.events`` logger and returns ``None``.
    """
    when = time.time() if received_at is None else received_at
    raw = event.data
    event_id = event.id or None
    try:
        # The common case first, without _loads's fallbacks.
        decoded: Any = json.loads(raw)
        errors = None
    except (ValueError, RecursionError):
        decoded, errors = _loads(raw)
    if errors is None:
        result = _build(decoded, raw, event_id, when)
        if type(result) is not MalformedEvent:
            return result
    else:
        result = MalformedEvent(raw, errors, id=event_id, received_at=when)
    assert isinstance(result, MalformedEvent)
    return _malformed(result, on_malformed)


def _malformed(event: MalformedEvent, on_malformed: OnMalformed) -> MalformedEvent | None:
    if on_malformed == "emit":
        return event
    if on_malformed == "raise":
        raise MalformedEventError(
            f"malformed Lens frame ({_summary(event.errors)})", event.raw, event.errors
        )
    if on_malformed == "skip":
        logger.warning(
            "skipped a malformed Lens frame (%s): %.200r", _summary(event.errors), event.raw
        )
        return None
    raise ValueError(f"on_malformed must be 'emit', 'raise' or 'skip', not {on_malformed!r}")


def _summary(errors: Mapping[str, Any]) -> str:
    return "; ".join(f"{key}: {value}" for key, value in errors.items())


# --- encoding ----------------------------------------------------------------------------------


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
