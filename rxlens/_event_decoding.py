"""Frames to typed Lens events: :func:`parse_event`, :func:`from_payload` and their fast path.

Validation is the marshmallow schemas of :mod:`rxlens.schemas`. Running marshmallow on every
frame would cost several times the JSON decoding itself, so each type also gets a structural
check that accepts only payloads the schema is known to accept with the same result (exact
Python types, nothing to coerce). The check is not written by hand: it is built here, at import
time, from the fields each schema declares, with one small table from marshmallow field class to
the Python type a valid value has. Anything the check is unsure of goes to marshmallow, which
decides and words the errors. A property test holds the two paths equal.

Building the checks also holds each dataclass of :mod:`rxlens._event_types` to its schema: a
field missing on one side, out of order, read under another key, or annotated with another type
makes this module refuse to import (:class:`TypeError`, naming the field), so the two
declarations of a payload field cannot drift apart silently.

Identity: ``id`` is the SSE id set by the frame's own block (``Event.id``), ``None`` when the
block had none or an empty one. The stream's ``last_event_id`` is deliberately not used as a
fallback: every frame after an ``id:`` shares it, so it would make distinct frames look alike.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal

from marshmallow import INCLUDE, Schema, ValidationError, missing
from marshmallow import fields as mm

from rxlens import schemas
from rxlens._event_types import (
    _CLASSES,
    STREAM_END,
    LensEvent,
    LogEvent,
    MalformedEvent,
    StreamEnd,
    UnknownEvent,
    _loads,
)
from rxlens._json import loads
from rxlens.errors import MalformedEventError

if TYPE_CHECKING:
    from rxlens.sse import Event

__all__ = ["OnMalformed", "from_payload", "parse_event"]

# The documented logger of skipped frames (its users configure it by this name).
logger = logging.getLogger("rxlens.events")

OnMalformed = Literal["emit", "raise", "skip"]


# --- the structural fast path, derived from the schemas ----------------------------------------
# Exact type tests (type(x) is int) because the schemas reject bool and coerce strings, which
# only marshmallow should do.

_RAW, _STR, _INT, _FLOAT, _DICT, _STR_LIST = range(6)

#: marshmallow field class -> (the fast check's kind, the dataclass annotation of the field).
#: Exact classes, not subclasses: a subclass may validate differently, so it needs its own row.
_KINDS: dict[type[mm.Field[Any]], tuple[int, str]] = {
    mm.Raw: (_RAW, "Any"),
    mm.String: (_STR, "str"),
    schemas._Status: (_STR, "str"),  # an integer status is converted: marshmallow's job
    mm.Integer: (_INT, "int"),
    mm.Float: (_FLOAT, "float"),  # finite, an int becomes a float
    mm.Dict: (_DICT, "Mapping[str, Any]"),
    mm.List: (_STR_LIST, "list[str]"),  # of fields.String only (checked below)
}

#: A payload as decoded JSON, the frame's SSE id, its arrival time, its text -> the event, or
#: None when marshmallow must decide.
_Decode = Callable[[Any, "str | None", float, str], "LensEvent | None"]


def _field_specs(cls: type[LensEvent], schema: Schema) -> tuple[tuple[str, int, bool, bool], ...]:
    """``(key, kind, required, allow_none)`` per payload field; raises on any drift from ``cls``."""

    def drift(what: str) -> TypeError:
        return TypeError(f"{type(schema).__name__} and {cls.__name__} disagree: {what}")

    if schema.unknown != INCLUDE:
        raise drift("the fast path keeps unknown fields, so the schema must too (INCLUDE)")
    specs = []
    for name, field in schema.fields.items():
        key = field.data_key or name
        if (field.attribute or name) != key:
            raise drift(f"{name!r} loads under another name than its key {key!r}")
        kind_entry = _KINDS.get(type(field))
        if kind_entry is None or (
            kind_entry[0] == _STR_LIST and type(getattr(field, "inner", None)) is not mm.String
        ):
            raise drift(f"{key!r}: no fast check for {type(field).__name__}; add it to _KINDS")
        if field.validators or field.load_default is not missing:
            raise drift(f"{key!r}: validators and load defaults are not in the fast check")
        kind, annotation = kind_entry
        if kind != _RAW and not (field.required and not field.allow_none):
            annotation += " | None"
        declared = cls.__dataclass_fields__.get(key)
        if declared is None or declared.type != annotation:
            found = "no such field" if declared is None else repr(declared.type)
            raise drift(f"{key!r} should be annotated {annotation!r} ({found})")
        specs.append((key, kind, bool(field.required), bool(field.allow_none)))
    if tuple(spec[0] for spec in specs) != cls._payload_fields:
        raise drift(f"payload fields {cls._payload_fields} (dataclass) != {specs} (schema)")
    return tuple(specs)


def _decoder(cls: type[LensEvent], schema: Schema, *, swap: bool | None = None) -> _Decode:
    """The structural check of ``cls``'s payload, fused with a constructor of ``cls``.

    The constructor fills the slots directly instead of calling the dataclass ``__init__``,
    whose frozen ``object.__setattr__`` per field and keyword handling cost more than the JSON
    decoding of a frame. It skips ``__post_init__``, which only fills ``event_data`` when it is
    missing, and parsed events always have it.

    How it fills them (``swap``; None: the first that works here): the object is made as a
    private subclass of ``cls`` that adds no slot and lets its attributes be set, its slots set
    as plain attributes, then its class set to ``cls`` (``__class__`` assignment, which CPython
    allows between classes of one layout). An ordinary slot store costs a few nanoseconds where
    calling a slot descriptor's ``__set__`` costs about sixty, and an event has nine slots.
    The result is an object of exactly ``cls``, as if made by its constructor. ``swap=False``
    calls the descriptors instead (where the assignment is refused).

    The function is generated for ``cls`` (as :mod:`dataclasses` generates ``__init__``): one
    straight line of tests per field, which on every frame costs less than a loop that asks
    each field's kind. The rules per field are :data:`_CHECKS`'s.
    """
    specs = _field_specs(cls, schema)
    own = ("type", "event_data", "id", "received_at", "raw")
    # Dataclass fields the payload does not fill (a result's session_id): set to None.
    unset = [f.name for f in fields(cls) if f.name not in own and f.name not in cls._payload_fields]
    building = _building(cls) if swap is not False else cls
    if swap is None:
        swap = _becomes(building, cls)
        if not swap:
            building = cls
    namespace: dict[str, Any] = {
        "new": object.__new__,
        "cls": cls,
        "building": building,
        "isfinite": math.isfinite,
        "lens_type": cls.__dataclass_fields__["type"].default,
    }
    lines = [
        "def decode(data, event_id, received_at, raw):",
        "    if type(data) is not dict:",
        "        return None",
        "    get = data.get",
    ]
    for index, (key, kind, required, nullable) in enumerate(specs):
        value = f"value{index}"
        lines.append(f"    {value} = get({key!r})")
        lines.append(f"    if {value} is None:")
        if not nullable:
            lines.append("        return None")
        elif required:
            lines.append(f"        if {key!r} not in data:")
            lines.append("            return None")
        else:
            lines.append("        pass")
        lines.extend(line.format(value=value) for line in _CHECKS[kind])
    sources = ("lens_type", "data", "event_id", "received_at", "raw")
    values = [
        *((key, f"value{index}") for index, (key, *_) in enumerate(specs)),
        *((name, "None") for name in unset),
        *zip(own, sources, strict=True),
    ]
    lines.append("    obj = new(building)")
    for index, (name, source) in enumerate(values):
        if swap:
            lines.append(f"    obj.{name} = {source}")
        else:
            namespace[f"set{index}"] = getattr(cls, name).__set__
            lines.append(f"    set{index}(obj, {source})")
    if swap:
        lines.append("    obj.__class__ = cls")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)  # the text is built here, from the schema alone
    decode: _Decode = namespace["decode"]
    return decode


def _building(cls: type[LensEvent]) -> type[LensEvent]:
    """A subclass of ``cls`` of the same layout whose attributes can be set (see _decoder)."""
    namespace = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "__module__": __name__,
    }
    return type(f"_Building{cls.__name__}", (cls,), namespace)


def _becomes(building: type[LensEvent], cls: type[LensEvent]) -> bool:
    """Whether an object made as ``building`` can become a ``cls`` on this interpreter."""
    try:
        probe = object.__new__(building)
        probe.__class__ = cls
    except TypeError:
        return False
    return type(probe) is cls


#: The test of a present (not None) value, per kind: lines of the generated decoder, which
#: return None for a payload that marshmallow must judge.
_CHECKS: dict[int, tuple[str, ...]] = {
    _RAW: (),
    _STR: ("    elif type({value}) is not str:", "        return None"),
    _DICT: ("    elif type({value}) is not dict:", "        return None"),
    _INT: ("    elif type({value}) is not int:", "        return None"),
    _FLOAT: (
        "    elif type({value}) is int:",
        "        try:",
        "            {value} = float({value})",
        "        except OverflowError:",  # marshmallow words it ("Number too large.")
        "            return None",
        "    elif type({value}) is not float or not isfinite({value}):",
        "        return None",
    ),
    _STR_LIST: (
        "    elif type({value}) is not list or not all(type(v) is str for v in {value}):",
        "        return None",
        "    else:",
        "        {value} = list({value})",
    ),
}


def _stream_end(data: Any, event_id: str | None, received_at: float, raw: str) -> LensEvent:
    # The named exception to the schemas: sse.stream.end has none, any payload is accepted
    # (missing the end of a stream over a payload quibble would be worse than any payload).
    stats = data if type(data) is dict else None
    return StreamEnd(stats, event_data=data, id=event_id, received_at=received_at, raw=raw)


def _derive_decoders() -> dict[str, _Decode]:
    decoders: dict[str, _Decode] = {STREAM_END: _stream_end}
    for lens_type, cls in _CLASSES.items():
        schema = schemas.SCHEMAS.get(lens_type)
        if schema is not None:
            decoders[lens_type] = _decoder(cls, schema)
        elif lens_type not in decoders:
            raise TypeError(f"{cls.__name__} ({lens_type!r}) has no schema in rxlens.schemas")
    return decoders


#: Lens type -> its fast decoder, for every type with a class of its own.
_DECODERS = _derive_decoders()


# --- decoding ----------------------------------------------------------------------------------


def _build(payload: Any, raw: str, event_id: str | None, received_at: float) -> LensEvent:
    """Turn a decoded payload into its event (never raises)."""
    if type(payload) is dict:
        lens_type = payload.get("type")
        if type(lens_type) is str:
            data = payload.get("event_data")
            decode = _DECODERS.get(lens_type)
            if decode is not None:
                event = decode(data, event_id, received_at, raw)
                if event is not None:
                    return event
            elif lens_type.startswith("log."):
                return LogEvent(lens_type, data, id=event_id, received_at=received_at, raw=raw)
            else:
                return UnknownEvent(lens_type, data, id=event_id, received_at=received_at, raw=raw)
    return _build_slow(payload, raw, event_id, received_at)


def _build_slow(payload: Any, raw: str, event_id: str | None, received_at: float) -> LensEvent:
    """Validate with marshmallow: the authority on what is valid, and the error messages."""
    try:
        cls, kwargs = schemas.load_fields(payload)
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
    # json.loads's value (the C scanner alone in the common case: rxlens._json), then _loads's
    # fallbacks.
    errors = None
    try:
        decoded: Any = loads(raw)
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
