"""The JSONL recording format and replay: round trips, pacing in virtual time, damaged files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.errors import RecordedSessionError, RxLensError
from rxlens.events import (
    Heartbeat,
    InferenceResult,
    LensEvent,
    MalformedEvent,
    SessionFailed,
    StreamStart,
    UnknownEvent,
    from_payload,
)
from rxlens.recording import (
    FORMAT_VERSION,
    RecordingFormatError,
    RecordingIOError,
    decode_record,
    encode_record,
    read_recording,
    replay,
)
from rxlens.sinks import collect, to_jsonl

subscribe = ReactiveTest.subscribe


def result(text: str, at: float, sid: str | None = "lsn-1", eid: str | None = None) -> LensEvent:
    raw = json.dumps({"type": "inference.result", "event_data": {"response": [text], "extra": 1}})
    event = from_payload(raw, id=eid, received_at=at)
    return dataclasses.replace(event, session_id=sid) if sid else event


def write(path: Path, events: list[LensEvent]) -> None:
    collect(reactivex.from_iterable(events).pipe(to_jsonl(path)))


def same(a: LensEvent, b: LensEvent) -> bool:
    """Equal in every respect a recording must keep (equality skips received_at and raw)."""
    return a == b and a.received_at == b.received_at and a.raw == b.raw and type(a) is type(b)


# --- records -----------------------------------------------------------------------------------


def test_every_kind_of_event_round_trips() -> None:
    events: list[LensEvent] = [
        result("HEALTHY", 10.25, eid="42"),
        from_payload(
            '{"type":"sse.stream.start","event_data":{"session_id":"lsn-9","reader_id":"r"}}',
            received_at=1.0,
        ),
        from_payload(
            '{"type":"error_message","event_data":{"message":"odd"}}', id="x", received_at=2.0
        ),
        from_payload("not json at all", received_at=3.0),
        from_payload(
            '{"type":"inference.result","event_data":{"response":["A",{"A":1}]}}', received_at=4.0
        ),
    ]
    assert isinstance(events[1], StreamStart) and isinstance(events[2], UnknownEvent)
    assert isinstance(events[3], MalformedEvent)
    for event in events:
        back = decode_record(encode_record(event))
        assert same(back, event), (back, event)


def test_a_record_is_one_versioned_line() -> None:
    line = encode_record(result("Ärger\nzwei", 5.5, eid="1"))
    assert "\n" not in line
    record = json.loads(line)
    assert record == {
        "v": FORMAT_VERSION,
        "id": "1",
        "received_at": 5.5,
        "session_id": "lsn-1",
        "type": "inference.result",
        "raw": record["raw"],
    }
    assert json.loads(record["raw"])["event_data"]["extra"] == 1


def test_events_built_in_code_are_stored_as_their_envelope() -> None:
    event = InferenceResult(response=["A", {"A": 2}], received_at=3.0, session_id="s")
    back = decode_record(encode_record(event))
    assert back == event and isinstance(back, InferenceResult)


def test_session_failed_round_trips_as_a_recorded_error() -> None:
    failed = SessionFailed(session_id="s2", error=ValueError("gone"), received_at=9.0)
    back = decode_record(encode_record(failed))
    assert isinstance(back, SessionFailed) and back.session_id == "s2"
    assert isinstance(back.error, RecordedSessionError)
    assert (back.error.error_type, back.error.message) == ("ValueError", "gone")


def test_stream_start_keeps_its_own_session_id_when_none_was_tagged() -> None:
    start = from_payload('{"type":"sse.stream.start","event_data":{"session_id":"lsn-9"}}')
    assert decode_record(encode_record(start)).session_id == "lsn-9"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        ('{"v": 2, "raw": "{}", "received_at": 1}', "unknown recording version 2"),
        ('{"raw": "{}", "received_at": 1}', "unknown recording version None"),
        ('{"v": 1, "raw": 5, "received_at": 1}', "needs raw"),
        ('{"v": 1, "raw": "{}", "received_at": "x"}', "needs raw"),
        ('{"v": 1, "raw": "{}", "received_at": 1, "id": 7}', "needs raw"),
    ],
)
def test_bad_records_are_refused(line: str, message: str) -> None:
    with pytest.raises(RecordingFormatError, match=message) as info:
        decode_record(line, "f.jsonl:3")
    assert "f.jsonl:3" in str(info.value) and isinstance(info.value, RxLensError)


def test_unknown_record_fields_are_ignored() -> None:
    record = json.loads(encode_record(result("A", 1.0)))
    record["future"] = {"x": 1}
    assert decode_record(json.dumps(record)).text == "A"


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            texts,
            st.floats(0, 2e9, allow_nan=False),
            st.one_of(st.none(), texts),
            st.one_of(st.none(), texts),
        ),
        max_size=8,
    )
)
def test_any_results_round_trip_through_a_file(tmp_path_factory: Any, specs: list[Any]) -> None:
    path = tmp_path_factory.mktemp("rec") / "r.jsonl"
    events = [result(text, at, sid or None, eid) for text, at, sid, eid in specs]
    write(path, events)
    back = list(read_recording(path))
    assert len(back) == len(events)
    assert all(same(b, e) for b, e in zip(back, events, strict=True))


# --- damaged files -----------------------------------------------------------------------------


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write(path, [result("A", 1.0), result("B", 2.0)])
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"v": 1, "id": null, "rec')
    with pytest.warns(RuntimeWarning, match="torn last line"):
        assert [e.text for e in read_recording(path)] == ["A", "B"]


def test_a_bad_line_in_the_middle_is_an_error_after_the_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        encode_record(result("A", 1.0)) + "\nnonsense\n" + encode_record(result("B", 2.0)) + "\n"
    )
    seen: list[LensEvent] = []
    with pytest.raises(RecordingFormatError, match=r"r\.jsonl:2"):
        collect(replay(path).pipe(ops.do_action(seen.append)))
    assert [e.text for e in seen] == ["A"]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("\n" + encode_record(result("A", 1.0)) + "\n\n")
    assert [e.text for e in read_recording(path)] == ["A"]


def test_a_missing_file_is_an_io_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingIOError):
        list(read_recording(tmp_path / "nope.jsonl"))
    with pytest.raises(RecordingIOError):
        collect(replay(tmp_path / "nope.jsonl"))


# --- replay ------------------------------------------------------------------------------------


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, list[LensEvent]]:
    path = tmp_path / "r.jsonl"
    events = [result("a", 100.0), result("b", 100.5, sid="lsn-2"), result("c", 102.0)]
    write(path, events)
    return path, events


def test_replay_as_fast_as_possible(recording: tuple[Path, list[LensEvent]]) -> None:
    path, events = recording
    s = TestScheduler()
    res = s.start(lambda: replay(path, scheduler=s))
    assert [(m.time, m.value.kind) for m in res.messages] == [(200, "N")] * 3 + [(200, "C")]
    assert all(same(m.value.value, e) for m, e in zip(res.messages[:3], events, strict=True))
    assert collect(replay(path)) == events


@pytest.mark.parametrize(("speed", "times"), [(1.0, [200, 200.5, 202]), (2.0, [200, 200.25, 201])])
def test_replay_at_recorded_pace_in_virtual_time(
    recording: tuple[Path, list[LensEvent]], speed: float, times: list[float]
) -> None:
    path, _ = recording
    s = TestScheduler()
    res = s.start(lambda: replay(path, speed=speed, scheduler=s))
    assert [m.time for m in res.messages] == [*times, times[-1]]
    assert [m.value.kind for m in res.messages] == ["N", "N", "N", "C"]
    assert [m.value.value.session_id for m in res.messages[:3]] == ["lsn-1", "lsn-2", "lsn-1"]


def test_replay_paced_out_of_order_times_emit_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write(path, [result("a", 10.0), result("b", 5.0), result("c", 11.0)])
    s = TestScheduler()
    res = s.start(lambda: replay(path, speed=1.0, scheduler=s))
    assert [
        (m.time, getattr(m.value, "value", None) and m.value.value.text) for m in res.messages
    ] == [
        (200, "a"),
        (200, "b"),
        (201, "c"),
        (201, None),
    ]


def test_replay_disposal_stops_and_closes(recording: tuple[Path, list[LensEvent]]) -> None:
    path, _ = recording
    s = TestScheduler()
    res = s.start(lambda: replay(path, speed=1.0, scheduler=s), disposed=201)
    assert [m.value.value.text for m in res.messages] == ["a", "b"]
    s.advance_to(1000)
    assert len(res.messages) == 2
    assert [e.text for e in collect(replay(path).pipe(ops.take(1)))] == ["a"]


@pytest.mark.parametrize("speed", [None, 1.0])
def test_replay_of_an_empty_recording_completes(tmp_path: Path, speed: float | None) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("")
    s = TestScheduler()
    res = s.start(lambda: replay(path, speed=speed, scheduler=s))
    assert [(m.time, m.value.kind) for m in res.messages] == [(200, "C")]


def test_replay_rejects_a_bad_speed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="speed"):
        replay(tmp_path / "r.jsonl", speed=0)


def test_replay_real_time_pacing_runs_on_a_timer(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write(path, [result("a", 1.0), result("b", 1.02), Heartbeat(received_at=1.04)])
    assert [e.type for e in collect(replay(path, speed=1.0), timeout=5)] == [
        "inference.result",
        "inference.result",
        "sse.stream.heartbeat",
    ]


# --- hostile recordings: every bad line a typed error with its number; replay never hangs -------

GOOD = encode_record(result("a", 100.0))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_deeply_nested_line_is_a_recording_error_with_its_number(tmp_path: Path) -> None:
    # json.loads of such a line raised an untyped RecursionError. (A deeply nested frame inside
    # "raw" is a malformed event, kept as recorded: that is data, not a bad line.)
    bad = '{"v": 1, "received_at": 1, "raw": "{}", "x": ' + nested(200_000) + "}"
    path = tmp_path / "r.jsonl"
    path.write_text(f"{GOOD}\n{bad}\n{GOOD}\n")
    events: list[LensEvent] = []
    with pytest.raises(RecordingFormatError, match=r"r\.jsonl:2") as info:
        events.extend(read_recording(path))
    assert info.value.line == 2 and len(events) == 1
    with pytest.raises(RecordingFormatError, match=r"r\.jsonl:2"):
        collect(replay(path), timeout=10)


@pytest.mark.parametrize("received_at", ["Infinity", "-Infinity", "NaN", "1e300", "-5", "-1e300"])
def test_an_impossible_received_at_is_refused(received_at: str) -> None:
    line = f'{{"v": 1, "raw": "{{}}", "received_at": {received_at}}}'
    with pytest.raises(RecordingFormatError, match="received_at") as info:
        decode_record(line, "f.jsonl:4")
    assert "f.jsonl:4" in str(info.value)


@pytest.mark.parametrize("received_at", ["Infinity", "1e300", "NaN"])
def test_replay_at_pace_of_an_impossible_time_ends_with_an_error(
    tmp_path: Path, received_at: str
) -> None:
    # Before: the timer thread died of an OverflowError and replay(speed=1) never ended.
    path = tmp_path / "r.jsonl"
    bad = GOOD.replace('"received_at":100.0', f'"received_at":{received_at}')
    assert bad != GOOD
    path.write_text(f"{GOOD}\n{bad}\n")
    with pytest.raises(RecordingFormatError, match=r"r\.jsonl:2.*received_at"):
        collect(replay(path, speed=1.0), timeout=10)


def test_replay_of_a_negative_first_time_ends_with_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(GOOD.replace('"received_at":100.0', '"received_at":-1e300') + f"\n{GOOD}\n")
    with pytest.raises(RecordingFormatError, match=r"r\.jsonl:1.*received_at"):
        collect(replay(path, speed=1.0), timeout=10)


def test_replay_waits_out_any_gap_without_overflowing_the_scheduler(tmp_path: Path) -> None:
    # A legal gap at a tiny speed is a wait longer than any timer can hold: it must be waited
    # out in steps (here: still waiting, no error) instead of crashing the scheduler.
    path = tmp_path / "r.jsonl"
    write(path, [result("a", 0.0), result("b", 1000.0)])
    s = TestScheduler()
    res = s.start(lambda: replay(path, speed=1e-9, scheduler=s), disposed=100_000)
    assert [(m.time, m.value.kind) for m in res.messages] == [(200, "N")]


def test_a_line_too_long_to_be_a_record_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    result = {"type": "inference.result", "event_data": {"response": ["x"]}}
    good = encode_record(from_payload(result))
    path.write_text(good + "\n" + "x" * 5000 + "\n" + good + "\n", encoding="utf-8")
    events = read_recording(path, max_line_chars=1000)
    assert next(events).type == "inference.result"
    with pytest.raises(RecordingFormatError, match="longer than 1000 characters") as caught:
        next(events)
    assert caught.value.line == 2
