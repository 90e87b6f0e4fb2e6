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

Validation is the marshmallow schemas of :mod:`rxlens.schemas`, the one definition of each
type's payload fields. Decoding runs a structural check built from those schemas first and hands
a payload to marshmallow only when the check is not conclusive (see
:mod:`rxlens._event_decoding`), so a typical frame costs little more than its JSON decoding.

This module is the public face: the types live in :mod:`rxlens._event_types`, the decoding in
:mod:`rxlens._event_decoding`; import both from here.

Identity: ``id`` is the SSE id set by the frame's own block (``Event.id``), ``None`` when the
block had none or an empty one. The stream's ``last_event_id`` is deliberately not used as a
fallback: every frame after an ``id:`` shares it, so it would make distinct frames look alike.

Equality compares the Lens content (type, payload, typed fields), ``id`` and ``session_id``; not
``received_at`` nor ``raw``, so a frame received twice (after a resume) compares equal, and an
event built by hand equals the parsed one.
"""

from __future__ import annotations

from rxlens._event_decoding import OnMalformed, from_payload, parse_event
from rxlens._event_types import (
    HEARTBEAT,
    INFERENCE_ERROR,
    INFERENCE_RESULT,
    MALFORMED,
    MODIFY_RESULT,
    SESSION_FAILED,
    STREAM_END,
    STREAM_START,
    Heartbeat,
    InferenceError,
    InferenceResult,
    LensEvent,
    LogEvent,
    MalformedEvent,
    ModifyResult,
    SessionFailed,
    StreamEnd,
    StreamStart,
    UnknownEvent,
    event_class,
    tag_session,
    to_json,
)

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
    "OnMalformed",
    "SessionFailed",
    "StreamEnd",
    "StreamStart",
    "UnknownEvent",
    "event_class",
    "from_payload",
    "parse_event",
    "tag_session",
    "to_json",
]
