"""marshmallow schemas of the Lens event envelope and of each known payload.

:class:`LensEventSchema` loads an envelope ``{"type": ..., "event_data": ...}`` into the frozen
dataclass of :mod:`rxlens.events` for its type, and dumps one back. Every payload schema keeps
the fields it does not know (``unknown = INCLUDE``): the API grows, and a new field must not turn
a good frame into a malformed one. Optional fields accept ``null``.

The schemas are the definition of a valid frame, and the one list of each type's payload
fields. :func:`rxlens.events.parse_event` runs a structural check built from these declarations
(:mod:`rxlens._event_decoding`) and hands a payload to marshmallow only when that check is not
conclusive; a property test holds the two to the same answers. Adding a payload field is two
edits: the schema field here and the dataclass field in :mod:`rxlens._event_types` (with its
Python type); importing the decoding fails when the two disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load

from rxlens import _event_types as ev

__all__ = [
    "SCHEMAS",
    "EnvelopeSchema",
    "HeartbeatSchema",
    "InferenceErrorSchema",
    "InferenceResultSchema",
    "LensEventSchema",
    "ModifyResultSchema",
    "StreamStartSchema",
    "load_fields",
]


class _Status(fields.Field):  # type: ignore[type-arg]
    """A session status: a string as sent, or an integer code turned into its string (``"3"``)."""

    default_error_messages = {"invalid": "Not a valid status (a string or an integer)."}  # noqa: RUF012

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise self.make_error("invalid")


class _Payload(Schema):
    class Meta:
        unknown = INCLUDE


class StreamStartSchema(_Payload):
    """``sse.stream.start``: ``{"session_id", "reader_id"}``."""

    session_id = fields.String(allow_none=True)
    reader_id = fields.String(allow_none=True)


class HeartbeatSchema(_Payload):
    """``sse.stream.heartbeat``: session status and reader counters."""

    session_id = fields.String(allow_none=True)
    session_status = _Status(allow_none=True)
    num_messages = fields.Integer(allow_none=True)
    num_bytes = fields.Integer(allow_none=True)
    message_timeout = fields.Float(allow_none=True)


class InferenceResultSchema(_Payload):
    """``inference.result``: ``response`` is required (its shape varies by lens)."""

    response = fields.Raw(required=True, allow_none=True)
    query_id = fields.String(allow_none=True)
    query_metadata = fields.Dict(allow_none=True)


class ModifyResultSchema(_Payload):
    """``session.modify.result``: ``{"query_metadata": {"class_name": ...}}``."""

    query_metadata = fields.Dict(allow_none=True)


class InferenceErrorSchema(_Payload):
    """``inference.error``: ``{"error_messages": ["..."]}``."""

    # Named with a trailing underscore: ``Schema.error_messages`` is marshmallow's own attribute.
    error_messages_ = fields.List(
        fields.String(), allow_none=True, data_key="error_messages", attribute="error_messages"
    )


#: Lens type -> schema instance of its payload (built once: schema construction is costly).
SCHEMAS: dict[str, Schema] = {
    ev.STREAM_START: StreamStartSchema(),
    ev.HEARTBEAT: HeartbeatSchema(),
    ev.INFERENCE_RESULT: InferenceResultSchema(),
    ev.MODIFY_RESULT: ModifyResultSchema(),
    ev.INFERENCE_ERROR: InferenceErrorSchema(),
}


class EnvelopeSchema(Schema):
    """The envelope: a string ``type`` and any ``event_data``; other keys are kept."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True)
    event_data = fields.Raw(allow_none=True, load_default=None)


_ENVELOPE = EnvelopeSchema()


def load_fields(payload: Any) -> tuple[type[ev.LensEvent], dict[str, Any]]:
    """Validate an envelope: the event class and its typed keyword arguments.

    Raises :class:`marshmallow.ValidationError` with marshmallow's messages; payload errors are
    nested under ``"event_data"``.
    """
    envelope = _ENVELOPE.load(payload)
    lens_type: str = envelope["type"]
    cls = ev.event_class(lens_type)
    data = envelope["event_data"]
    if cls is ev.StreamEnd:
        return cls, {"stats": data if isinstance(data, dict) else None}
    if cls in (ev.LogEvent, ev.UnknownEvent):
        return cls, {"type": lens_type}
    schema = SCHEMAS[lens_type]
    try:
        loaded = schema.load(data)
    except ValidationError as exc:
        raise ValidationError({"event_data": exc.messages}) from exc
    return cls, {name: loaded.get(name) for name in cls._payload_fields}


class LensEventSchema(EnvelopeSchema):
    """Loads an envelope into its :class:`~rxlens.events.LensEvent`; dumps one back to JSON.

    The loaded event has no SSE id and ``received_at`` is the load time; ``raw`` is empty (use
    :func:`rxlens.events.parse_event` for frames).
    """

    @post_load
    def _make_event(self, data: dict[str, Any], **kwargs: Any) -> ev.LensEvent:
        cls, typed = load_fields(data)
        return cls(**typed, event_data=data.get("event_data"))

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        """The envelope of one event (or a list of them with ``many=True``)."""
        if many or (many is None and self.many):
            return [ev.to_json(item) for item in obj]
        return ev.to_json(obj)
