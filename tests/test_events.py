"""rxlens.events: every documented frame shape to its dataclass, and bad frames never lost."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from rxlens import operators
from rxlens.errors import MalformedEventError, RecordedSessionError, RxLensError
from rxlens.events import (
    MALFORMED,
    SESSION_FAILED,
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
    from_payload,
    parse_event,
    tag_session,
    to_json,
)
from rxlens.sse import Event


def frame(payload: object, **kw: str | None) -> Event:
    return Event(json.dumps(payload), **kw)  # type: ignore[arg-type]


VIDEO = {
    "type": "inference.result",
    "event_data": {
        "response": ["Person is stirring a pot on the stove."],
        "query_id": "qry-abc123",
        "query_metadata": {"sensor_timestamp": "00:02:15", "frame_ids": [270, 275, 280]},
    },
}
CSV = {
    "type": "inference.result",
    "event_data": {
        "response": ["HEALTHY", {"HEALTHY": 3, "BROKEN": 2}],
        "query_metadata": {
            "query_timestamp": 1741843200.5,
            "query_metadata": {
                "read_index": 100,
                "file_id": "data.csv",
                "window_size": 100,
                "total_rows": 1000,
            },
        },
    },
}
EMBEDDING = {
    "type": "inference.result",
    "event_data": {
        "response": [[0.01, -0.2, 1], [0.5, 0.25, 0]],
        "query_metadata": {"query_timestamp": 1747000000.1, "query_metadata": {"read_index": 0}},
    },
}


# --- each type ---------------------------------------------------------------------------------


def test_stream_start() -> None:
    ev = parse_event(
        frame(
            {"type": "sse.stream.start", "event_data": {"session_id": "lsn-1", "reader_id": "87"}}
        ),
        received_at=12.5,
    )
    assert isinstance(ev, StreamStart)
    assert (ev.type, ev.session_id, ev.reader_id, ev.received_at) == (
        "sse.stream.start",
        "lsn-1",
        "87",
        12.5,
    )


def test_heartbeat_fields_and_integer_status() -> None:
    data = {
        "session_id": "lsn-1",
        "session_status": "SESSION_STATUS_RUNNING",
        "num_messages": 0,
        "num_bytes": 0,
        "message_timeout": 5,
    }
    ev = parse_event(frame({"type": "sse.stream.heartbeat", "event_data": data}))
    assert ev == Heartbeat("lsn-1", "SESSION_STATUS_RUNNING", 0, 0, 5.0, event_data=data)
    assert isinstance(ev, Heartbeat) and type(ev.message_timeout) is float
    coded = parse_event(
        frame({"type": "sse.stream.heartbeat", "event_data": {"session_status": 3}})
    )
    assert isinstance(coded, Heartbeat) and coded.session_status == "3"


@pytest.mark.parametrize(
    ("data", "stats"),
    [
        (None, None),
        ({"num_messages": 3, "sse_run_time": 1.5}, {"num_messages": 3, "sse_run_time": 1.5}),
        ("bye", None),
    ],
)
def test_stream_end_accepts_any_payload(data: object, stats: object) -> None:
    payload: dict[str, object] = {"type": "sse.stream.end"}
    if data is not None:
        payload["event_data"] = data
    ev = parse_event(frame(payload))
    assert isinstance(ev, StreamEnd) and ev.stats == stats


def test_video_result_accessors() -> None:
    ev = parse_event(frame(VIDEO, id="41"))
    assert isinstance(ev, InferenceResult)
    assert ev.text == ev.label == "Person is stirring a pot on the stove."
    assert ev.query_id == "qry-abc123"
    assert ev.sensor_timestamp == "00:02:15"
    assert ev.frame_ids == [270, 275, 280]
    assert (ev.scores, ev.read_index, ev.window_size, ev.embedding) == (None, None, None, None)
    assert ev.id == "41"


def test_sensor_timestamp_beside_query_time() -> None:
    ev = from_payload(
        {
            "type": "inference.result",
            "event_data": {"response": ["x"], "sensor_timestamp": "00:00:35", "query_time_sec": 2},
        }
    )
    assert isinstance(ev, InferenceResult) and ev.sensor_timestamp == "00:00:35"


def test_classification_result_accessors() -> None:
    ev = parse_event(frame(CSV))
    assert isinstance(ev, InferenceResult)
    assert ev.label == "HEALTHY"
    assert ev.scores == {"HEALTHY": 3.0, "BROKEN": 2.0}
    assert (ev.read_index, ev.window_size) == (100, 100)
    assert ev.query_timestamp == 1741843200.5
    assert ev.embedding is None and ev.frame_ids is None


def test_embedding_result_accessors() -> None:
    ev = parse_event(frame(EMBEDDING))
    assert isinstance(ev, InferenceResult)
    assert ev.embedding == [[0.01, -0.2, 1.0], [0.5, 0.25, 0.0]]
    assert ev.text is None and ev.scores is None and ev.read_index == 0


def test_scores_ignore_non_numbers() -> None:
    ev = from_payload({"type": "inference.result", "event_data": {"response": ["A", {"A": True}]}})
    assert isinstance(ev, InferenceResult) and ev.scores is None and ev.label == "A"


def test_modify_result_and_inference_error() -> None:
    mod = from_payload(
        {"type": "session.modify.result", "event_data": {"query_metadata": {"class_name": "OK"}}}
    )
    assert isinstance(mod, ModifyResult) and mod.class_name == "OK"
    err = from_payload(
        {"type": "inference.error", "event_data": {"error_messages": ["qry-1 failed!"]}}
    )
    assert isinstance(err, InferenceError) and err.error_messages == ["qry-1 failed!"]


def test_log_and_unknown_types_pass_untouched() -> None:
    log = from_payload({"type": "log.warning", "event_data": {"message": "slow"}})
    assert isinstance(log, LogEvent) and (log.level, log.message) == ("warning", "slow")
    for lens_type in ("error_message", "frame.processed", "stream.null", "inference.reset"):
        data = {"message": "x", "n": [1, 2]}
        ev = from_payload({"type": lens_type, "event_data": data})
        assert ev == UnknownEvent(lens_type, data)
        assert to_json(ev) == {"type": lens_type, "event_data": data}


def test_unknown_fields_are_kept() -> None:
    data = {"session_id": "lsn-1", "reader_id": "r", "shard": 7, "new": {"a": 1}}
    ev = from_payload({"type": "sse.stream.start", "event_data": data})
    assert isinstance(ev, StreamStart) and ev.event_data == data
    assert to_json(ev)["event_data"] == data


# --- metadata ------------------------------------------------------------------------------------


def test_id_is_the_frames_own_id_never_the_stream_cursor() -> None:
    payload = {"type": "log.info", "event_data": None}
    assert parse_event(frame(payload, id="9", last_event_id="9")).id == "9"  # type: ignore[union-attr]
    assert parse_event(frame(payload, last_event_id="9")).id is None  # type: ignore[union-attr]
    assert parse_event(frame(payload, id="")).id is None  # type: ignore[union-attr]


def test_raw_and_received_at_are_kept_and_not_compared() -> None:
    text = json.dumps(VIDEO, indent=1)
    a = parse_event(Event(text), received_at=1.0)
    b = parse_event(Event(json.dumps(VIDEO)), received_at=2.0)
    assert a is not None and b is not None
    assert a.raw == text and a.received_at == 1.0
    assert a == b and hash(a) == hash(b)


def test_received_at_defaults_to_wall_clock() -> None:
    import time

    before = time.time()
    ev = parse_event(frame(VIDEO))
    assert ev is not None and before <= ev.received_at <= time.time()


def test_session_id_settable_by_replace() -> None:
    ev = from_payload(VIDEO)
    tagged = dataclasses.replace(ev, session_id="lsn-2")
    assert tagged.session_id == "lsn-2" and isinstance(tagged, InferenceResult)
    assert tagged.text == ev.text  # type: ignore[attr-defined]


def test_events_are_frozen() -> None:
    ev = from_payload(VIDEO)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.id = "x"  # type: ignore[misc]


def test_hand_built_event_equals_parsed_and_serialises() -> None:
    built = StreamStart("lsn-1", "87")
    parsed = from_payload(
        {"type": "sse.stream.start", "event_data": {"session_id": "lsn-1", "reader_id": "87"}}
    )
    assert built == parsed
    assert to_json(InferenceResult(["hi"])) == {
        "type": "inference.result",
        "event_data": {"response": ["hi"]},
    }


def test_to_json_reflects_replace() -> None:
    ev = from_payload(
        {"type": "sse.stream.heartbeat", "event_data": {"num_messages": 1, "extra": True}}
    )
    assert isinstance(ev, Heartbeat)
    assert to_json(dataclasses.replace(ev, num_messages=5)) == {
        "type": "sse.stream.heartbeat",
        "event_data": {"num_messages": 5, "extra": True},
    }


def test_every_event_is_a_lens_event() -> None:
    for payload in (VIDEO, CSV, {"type": "x"}, {"nope": 1}):
        assert isinstance(from_payload(payload), LensEvent)


# --- bad frames ----------------------------------------------------------------------------------

BAD = [
    ("not json", "_json"),
    ("[1, 2]", "_schema"),
    ('{"event_data": {}}', "type"),
    ('{"type": 5}', "type"),
    ('{"type": "inference.result", "event_data": {"query_id": "q"}}', "event_data"),
    ('{"type": "inference.result", "event_data": "text"}', "event_data"),
    ('{"type": "sse.stream.heartbeat", "event_data": {"num_messages": "many"}}', "event_data"),
    ('{"type": "inference.error", "event_data": {"error_messages": [1]}}', "event_data"),
]


@pytest.mark.parametrize(("raw", "key"), BAD)
def test_malformed_is_emitted_with_raw_and_messages(raw: str, key: str) -> None:
    ev = parse_event(Event(raw, id="3"), received_at=4.0)
    assert isinstance(ev, MalformedEvent)
    assert (ev.type, ev.raw, ev.id, ev.received_at) == (MALFORMED, raw, "3", 4.0)
    assert ev.errors.get(key)


def test_malformed_keeps_the_claimed_type_and_messages() -> None:
    raw = '{"type": "inference.result", "event_data": {"query_id": 5}}'
    ev = parse_event(Event(raw))
    assert isinstance(ev, MalformedEvent)
    assert ev.claimed_type == "inference.result"
    assert ev.errors == {
        "event_data": {
            "response": ["Missing data for required field."],
            "query_id": ["Not a valid string."],
        }
    }
    assert to_json(ev) == json.loads(raw)


@pytest.mark.parametrize(("raw", "key"), BAD)
def test_malformed_raises_when_asked(raw: str, key: str) -> None:
    with pytest.raises(MalformedEventError) as info:
        parse_event(Event(raw), on_malformed="raise")
    assert info.value.raw == raw
    assert key in info.value.errors  # type: ignore[operator]
    assert "malformed Lens frame" in str(info.value)


def test_malformed_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rxlens.events"):
        assert parse_event(Event("not json"), on_malformed="skip") is None
    assert "skipped a malformed Lens frame" in caplog.text and "not json" in caplog.text


def test_good_frames_are_unaffected_by_the_policy() -> None:
    for policy in ("emit", "raise", "skip"):
        assert isinstance(parse_event(frame(VIDEO), on_malformed=policy), InferenceResult)


def test_bad_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="on_malformed"):
        parse_event(Event("x"), on_malformed="drop")  # type: ignore[arg-type]


def test_to_json_of_non_json_malformed_raises() -> None:
    ev = parse_event(Event("oops"))
    assert isinstance(ev, MalformedEvent)
    with pytest.raises(MalformedEventError):
        to_json(ev)


# --- the b'...' wrapper ------------------------------------------------------------------------


def test_python_bytes_repr_wrapper_is_accepted() -> None:
    inner = json.dumps(VIDEO)
    for text in (repr(inner.encode()), "b'" + inner + "'", ' b"' + inner.replace('"', "'") + '" '):
        ev = parse_event(Event(text))
        if text.startswith(" b"):
            # single-quoted JSON inside is still not JSON
            assert isinstance(ev, MalformedEvent)
            continue
        assert isinstance(ev, InferenceResult), text
        assert ev.raw == text and ev.text == "Person is stirring a pot on the stove."


def test_bytes_wrapper_with_escapes_and_non_ascii() -> None:
    inner = json.dumps({"type": "log.info", "event_data": "café ✓"}, ensure_ascii=False)
    ev = parse_event(Event(repr(inner.encode("utf-8"))))
    assert isinstance(ev, LogEvent) and ev.message == "café ✓"


@pytest.mark.parametrize("text", ["b'not json'", "b'\\xff'", "b'", "b''", "b'{' + 1"])
def test_broken_bytes_wrapper_is_malformed(text: str) -> None:
    assert isinstance(parse_event(Event(text)), MalformedEvent)


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    assert isinstance(parse_event(Event("[" * 100_000)), MalformedEvent)


# --- the fast path -------------------------------------------------------------------------------


def test_documented_shapes_never_reach_marshmallow(monkeypatch: pytest.MonkeyPatch) -> None:
    # Performance guard without timing: a valid frame of every documented shape is decoded by
    # the structural check alone; marshmallow runs only for frames that need a verdict.
    import rxlens.schemas

    def refuse(payload: object) -> None:
        raise AssertionError(f"marshmallow ran for {payload!r}")

    monkeypatch.setattr(rxlens.schemas, "load_fields", refuse)
    heartbeat = {
        "type": "sse.stream.heartbeat",
        "event_data": {
            "session_id": "lsn-1",
            "session_status": "SESSION_STATUS_RUNNING",
            "num_messages": 0,
            "num_bytes": 0,
            "message_timeout": 5.0,
        },
    }
    start = {"type": "sse.stream.start", "event_data": {"session_id": "s", "reader_id": "r"}}
    others = [
        {"type": "sse.stream.end"},
        {"type": "session.modify.result", "event_data": {"query_metadata": {"class_name": "A"}}},
        {"type": "inference.error", "event_data": {"error_messages": ["x failed!"]}},
        {"type": "error_message", "event_data": {"message": "m"}},
        {"type": "log.info", "event_data": {}},
    ]
    for payload in [VIDEO, CSV, EMBEDDING, heartbeat, start, *others]:
        event = parse_event(frame(payload))
        assert not isinstance(event, MalformedEvent)
    with pytest.raises(AssertionError, match="marshmallow ran"):
        parse_event(frame({"type": "inference.result", "event_data": {}}))


# --- SessionFailed is an event type ------------------------------------------------------------


def test_session_failed_lives_with_the_event_types() -> None:
    # One class, wherever it is imported from; its recorded error is an rxlens error.
    assert operators.SessionFailed is SessionFailed
    assert operators.RecordedSessionError is RecordedSessionError
    recorded = RecordedSessionError("ValueError", "bad key")
    assert isinstance(recorded, RxLensError) and not recorded.retryable
    assert str(recorded) == "ValueError: bad key"
    failed = SessionFailed(session_id="s1", error=recorded)
    assert failed.type == SESSION_FAILED
    assert to_json(failed) == {
        "type": SESSION_FAILED,
        "event_data": {"error_type": "RecordedSessionError", "message": "ValueError: bad key"},
    }
    moved = tag_session(failed, "s2")
    assert isinstance(moved, SessionFailed) and moved.session_id == "s2"
    assert moved.error is recorded
