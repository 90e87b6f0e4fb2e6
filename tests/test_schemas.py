"""Laws of the schemas and of the typed decoding (hypothesis).

- Any valid payload of each type loads to its class and serialises back to equal JSON.
- Arbitrary JSON and arbitrary text never make decoding raise.
- The structural fast path and marshmallow give the same event for any envelope.
- The fast path is built from the schemas, and a dataclass that drifts from its schema is refused.

The payload fields and their generators come from the schemas (a table per marshmallow field
class), so a new payload field is tested here without editing this file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError
from marshmallow import fields as mm

from rxlens import _event_decoding, schemas
from rxlens import events as ev
from rxlens._event_types import _with_payload
from rxlens.errors import MalformedEventError
from rxlens.schemas import SCHEMAS, LensEventSchema, load_fields
from rxlens.sse import Event

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN_KEYS = {
    field.data_key or name for schema in SCHEMAS.values() for name, field in schema.fields.items()
}
TYPED = [*SCHEMAS, ev.STREAM_END]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
extras = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k not in KNOWN_KEYS), json_values, max_size=3
)


def payload_of(
    lens_type: str, required: dict[str, Any], optional: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    data = st.builds(
        lambda known, more: {**more, **known},
        st.fixed_dictionaries(
            {
                k: st.just(v) if not isinstance(v, st.SearchStrategy) else v
                for k, v in required.items()
            },
            optional=optional,
        ),
        extras,
    )
    return st.builds(lambda d: {"type": lens_type, "event_data": d}, data)


#: marshmallow field class -> valid values a payload may hold (``None`` added when allowed).
#: Values that load to something else (an integer status to its string) are left out: the
#: round trip below must give the payload back.
VALUES: dict[type[mm.Field[Any]], st.SearchStrategy[Any]] = {
    mm.Raw: json_values,
    mm.String: st.text(max_size=12),
    schemas._Status: st.text(max_size=12),
    mm.Integer: st.integers(),
    mm.Float: st.floats(allow_nan=False, allow_infinity=False),
    mm.Dict: objects,
    mm.List: st.lists(st.text(max_size=20), max_size=3),
}


def schema_payloads(lens_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid envelopes of ``lens_type``, field by field from its schema."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in SCHEMAS[lens_type].fields.items():
        values = VALUES[type(field)]
        values = st.none() | values if field.allow_none else values
        (required if field.required else optional)[field.data_key or name] = values
    return payload_of(lens_type, required, optional)


valid_payloads: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    **{lens_type: schema_payloads(lens_type) for lens_type in SCHEMAS},
    ev.STREAM_END: st.builds(
        lambda d: {"type": ev.STREAM_END, "event_data": d}, st.none() | objects
    ),
    "log": st.builds(
        lambda t, d: {"type": "log." + t, "event_data": d}, st.text(max_size=8), json_values
    ),
    "unknown": st.builds(
        lambda t, d: {"type": t, "event_data": d},
        st.text(max_size=20).filter(lambda t: t not in TYPED and not t.startswith("log.")),
        json_values,
    ),
}
EXPECTED_CLASS = {
    ev.STREAM_START: ev.StreamStart,
    ev.HEARTBEAT: ev.Heartbeat,
    ev.STREAM_END: ev.StreamEnd,
    ev.INFERENCE_RESULT: ev.InferenceResult,
    ev.MODIFY_RESULT: ev.ModifyResult,
    ev.INFERENCE_ERROR: ev.InferenceError,
    "log": ev.LogEvent,
    "unknown": ev.UnknownEvent,
}


@pytest.mark.parametrize("kind", list(valid_payloads))
def test_valid_payload_loads_to_its_class_and_back(kind: str) -> None:
    @FAST
    @given(valid_payloads[kind])
    def check(payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        event = ev.parse_event(Event(text), received_at=5.0, on_malformed="raise")
        assert type(event) is EXPECTED_CLASS[kind]
        assert event is not None and event.raw == text and event.type == payload["type"]
        back = ev.to_json(event)
        assert back == payload
        assert json.loads(json.dumps(back)) == payload
        # The schema itself loads to the same event and dumps the same JSON.
        loaded = LensEventSchema().load(payload)
        assert loaded == event
        assert LensEventSchema().dump(loaded) == payload

    check()


def test_integer_status_serialises_as_its_string() -> None:
    payload = {"type": ev.HEARTBEAT, "event_data": {"session_status": 6}}
    assert ev.to_json(ev.from_payload(payload))["event_data"] == {"session_status": "6"}


def test_schema_dump_many() -> None:
    events = [ev.StreamStart("a", "b"), ev.UnknownEvent("x", 1)]
    assert LensEventSchema(many=True).dump(events) == [
        {"type": ev.STREAM_START, "event_data": {"session_id": "a", "reader_id": "b"}},
        {"type": "x", "event_data": 1},
    ]


def test_an_integer_too_large_for_a_float_field_is_malformed_not_a_crash() -> None:
    text = json.dumps({"type": ev.HEARTBEAT, "event_data": {"message_timeout": 10**400}})
    event = ev.parse_event(Event(text))
    assert isinstance(event, ev.MalformedEvent) and event.raw == text
    assert event.errors == {"event_data": {"message_timeout": ["Number too large."]}}


def test_schema_load_rejects_what_parse_marks_malformed() -> None:
    with pytest.raises(ValidationError) as info:
        load_fields({"type": ev.INFERENCE_RESULT, "event_data": {}})
    assert info.value.messages == {"event_data": {"response": ["Missing data for required field."]}}


# --- never raises ------------------------------------------------------------------------------

any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from([*TYPED, "log.info"]) | st.text(max_size=8) | any_json},
    optional={"event_data": any_json | objects},
)


@FAST
@given(any_json | envelopes)
def test_arbitrary_json_never_raises(value: Any) -> None:
    event = ev.parse_event(Event(json.dumps(value)))
    assert isinstance(event, ev.LensEvent)
    if not (isinstance(value, dict) and isinstance(value.get("type"), str)):
        assert isinstance(event, ev.MalformedEvent)
    elif not isinstance(event, ev.MalformedEvent):
        assert event.type == value["type"]


@FAST
@given(st.text(max_size=60) | st.binary(max_size=40).map(repr))
def test_arbitrary_text_never_raises(text: str) -> None:
    assert isinstance(ev.parse_event(Event(text)), ev.LensEvent)
    try:
        ev.parse_event(Event(text), on_malformed="raise")
    except MalformedEventError as exc:
        assert exc.raw == text
    skipped = ev.parse_event(Event(text), on_malformed="skip")
    assert skipped is None or not isinstance(skipped, ev.MalformedEvent)


# --- the fast path agrees with marshmallow -----------------------------------------------------

near_valid = st.fixed_dictionaries(
    {
        "type": st.sampled_from(TYPED),
        "event_data": st.none()
        | st.dictionaries(
            st.sampled_from(sorted(KNOWN_KEYS)) | st.text(max_size=4),
            json_values
            | st.integers().map(str)
            | st.sampled_from([1.0, 2.5, True, float("inf"), 10**400]),
            max_size=5,
        ),
    }
)


@FAST
@given(st.one_of(*valid_payloads.values()) | near_valid | envelopes)
def test_fast_path_agrees_with_marshmallow(payload: Any) -> None:
    fast = _event_decoding._build(payload, "raw", "1", 3.0)
    slow = _event_decoding._build_slow(payload, "raw", "1", 3.0)
    assert type(fast) is type(slow)
    if not _has_nan(payload):
        assert fast == slow
    for name in ("id", "received_at", "raw", "session_id", "type"):
        assert getattr(fast, name) == getattr(slow, name)


# The fast constructor makes an object of a settable subclass and then sets its class to the
# event's own (``__class__`` assignment); the obviously-right constructor calls each slot's
# descriptor. Both must give the same object, of exactly the event's class, in every slot.
_BY_DESCRIPTORS = {
    lens_type: _event_decoding._decoder(ev.event_class(lens_type), schema, swap=False)
    for lens_type, schema in SCHEMAS.items()
}


def _slots(event: object) -> dict[str, Any]:
    return {
        name: getattr(event, name)
        for klass in type(event).__mro__
        for name in getattr(klass, "__slots__", ())
    }


@FAST
@given(st.one_of(*valid_payloads.values()) | near_valid)
def test_the_fast_constructor_equals_the_descriptors_one(payload: Any) -> None:
    lens_type = payload["type"]
    if lens_type not in _BY_DESCRIPTORS:
        return  # sse.stream.end: no generated constructor
    data = payload.get("event_data")
    fast = _event_decoding._DECODERS[lens_type](data, "1", 3.0, "raw")
    plain = _BY_DESCRIPTORS[lens_type](data, "1", 3.0, "raw")
    assert (fast is None) == (plain is None)
    if fast is not None:
        assert type(fast) is type(plain) is ev.event_class(lens_type)
        assert _slots(fast).keys() == _slots(plain).keys()
        for name, value in _slots(fast).items():
            assert value is _slots(plain)[name] or value == _slots(plain)[name], name
        assert fast.event_data is data


def test_an_event_of_the_fast_constructor_is_an_ordinary_frozen_event() -> None:
    import pickle

    data = {"response": ["A", {"A": 1}], "query_metadata": {"window_size": 3}}
    event = _event_decoding._DECODERS[ev.INFERENCE_RESULT](data, "7", 2.0, "raw")
    assert type(event) is ev.InferenceResult and not hasattr(event, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.response = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del event.raw  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(event)) == event
    assert hash(event) == hash(ev.InferenceResult(["A", {"A": 1}], id="7"))
    assert dataclasses.replace(event, id="8").id == "8"


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


# --- the schemas are the field list --------------------------------------------------------------


def test_every_typed_class_has_the_schema_fields_in_order() -> None:
    for lens_type, schema in SCHEMAS.items():
        keys = tuple(field.data_key or name for name, field in schema.fields.items())
        assert ev.event_class(lens_type)._payload_fields == keys


@_with_payload
@dataclass(frozen=True, slots=True)
class _Scored(ev.InferenceResult):
    confidence: float | None = None


class _ScoredSchema(schemas.InferenceResultSchema):
    confidence = mm.Float(allow_none=True)


def test_a_new_payload_field_is_the_schema_field_and_the_dataclass_field() -> None:
    # Nothing else to write: the fast check, _payload_fields and to_json follow.
    decode = _event_decoding._decoder(_Scored, _ScoredSchema())
    event = decode({"response": ["A"], "confidence": 1}, "7", 2.0, "raw")
    assert isinstance(event, _Scored) and event.id == "7" and event.text == "A"
    assert event.confidence == 1.0 and type(event.confidence) is float
    assert _Scored._payload_fields == ("response", "query_id", "query_metadata", "confidence")
    assert ev.to_json(dataclasses.replace(event, confidence=0.5))["event_data"] == {
        "response": ["A"],
        "confidence": 0.5,
    }
    for unsure in ("high", float("inf"), True):
        assert decode({"response": ["A"], "confidence": unsure}, None, 2.0, "raw") is None


class _Extra(Schema):
    class Meta:
        unknown = "include"

    response = mm.Raw(required=True, allow_none=True)
    query_id = mm.String(allow_none=True)
    query_metadata = mm.Dict(allow_none=True)
    confidence = mm.Float(allow_none=True)


class _Retyped(Schema):
    class Meta:
        unknown = "include"

    query_metadata = mm.String(allow_none=True)


class _Unsupported(Schema):
    class Meta:
        unknown = "include"

    query_metadata = mm.Boolean(allow_none=True)


class _Strict(Schema):
    query_metadata = mm.Dict(allow_none=True)


@pytest.mark.parametrize(
    ("cls", "schema", "message"),
    [
        (ev.InferenceResult, _Extra(), "'confidence' should be annotated 'float | None'"),
        (ev.ModifyResult, _Retyped(), "'query_metadata' should be annotated 'str | None'"),
        (ev.ModifyResult, _Unsupported(), "no fast check for Boolean"),
        (ev.ModifyResult, _Strict(), "INCLUDE"),
        (ev.InferenceResult, schemas.ModifyResultSchema(), "payload fields"),
    ],
)
def test_a_dataclass_that_drifts_from_its_schema_is_refused(
    cls: type[ev.LensEvent], schema: Schema, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        _event_decoding._decoder(cls, schema)


def test_schemas_and_types_do_not_import_the_decoding() -> None:
    # The events<->schemas cycle stays gone: the schemas and the types sit below the decoding
    # and the public face, at top level and inside functions alike.
    import ast
    from pathlib import Path

    root = Path(schemas.__file__).parent
    for module in ("schemas.py", "_event_types.py"):
        tree = ast.parse((root / module).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        above = {"rxlens.events", "rxlens._event_decoding", "rxlens.schemas"} - {
            f"rxlens.{module[:-3]}"
        }
        assert not imported & above, (module, sorted(imported & above))
