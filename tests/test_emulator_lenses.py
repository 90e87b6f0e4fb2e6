"""Scripted lenses, playback, determinism, and scale."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from test_emulator_support import frames_of, open_stream, raw_get, read_raw, result, take

from rxlens.emulator import LENSES, LensEmulator
from rxlens.emulator._lenses import generate


@pytest.fixture
def emu() -> LensEmulator:
    with LensEmulator(heartbeat_interval=0.5) as e:
        yield e


def _data(emu: LensEmulator, sid: str) -> list[dict[str, object]]:
    return [payload for _, payload in emu.events(sid)]


def test_activity_monitor_text_with_sensor_timestamp_and_frame_ids(emu: LensEmulator) -> None:
    sid = emu.create_session("activity-monitor", rate=0, seed=1)
    emu.step(sid, 3)
    events = _data(emu, sid)
    assert [e["type"] for e in events] == ["inference.result"] * 3
    data = [e["event_data"] for e in events]  # type: ignore[index]
    assert all(isinstance(d["response"][0], str) for d in data)
    meta = [d["query_metadata"] for d in data]
    assert [m["sensor_timestamp"] for m in meta] == ["00:00:00", "00:00:05", "00:00:10"]
    assert all(len(m["frame_ids"]) == 3 for m in meta)
    assert all(re.fullmatch(r"qry-[0-9a-f]{12}", d["query_id"]) for d in data)


def test_sensor_timestamp_can_sit_in_event_data(emu: LensEmulator) -> None:
    sid = emu.create_session(
        "activity-monitor", rate=0, options={"timestamp_in": "event_data", "video_step_sec": 60}
    )
    emu.step(sid, 2)
    data = _data(emu, sid)[1]["event_data"]
    assert data["sensor_timestamp"] == "00:01:00" and "query_time_sec" in data  # type: ignore[index]


def test_alert_lens_raises_alerts_at_its_rate(emu: LensEmulator) -> None:
    sid = emu.create_session("alert", rate=0, seed=3, options={"alert_rate": 0.5})
    emu.step(sid, 200)
    texts = [e["event_data"]["response"][0] for e in _data(emu, sid)]  # type: ignore[index]
    alerts = sum("alert:" in t.lower() and not t.startswith("No alert") for t in texts)
    assert 70 <= alerts <= 130


@pytest.mark.parametrize(("style", "total"), [("votes", 5), ("percent", 100.0), ("unit", 1.0)])
def test_machine_state_scores_styles(emu: LensEmulator, style: str, total: float) -> None:
    sid = emu.create_session(
        "machine-state", rate=0, seed=2, options={"scores": style, "unknown_rate": 0.0}
    )
    emu.step(sid, 5)
    for i, event in enumerate(_data(emu, sid)):
        label, scores = event["event_data"]["response"]  # type: ignore[index]
        assert set(scores) == {"HEALTHY", "BROKEN"}
        assert sum(scores.values()) == pytest.approx(total)
        assert label == max(scores, key=scores.get)
        inner = event["event_data"]["query_metadata"]["query_metadata"]  # type: ignore[index]
        assert inner["read_index"] == 100 * i and inner["window_size"] == 100


def test_machine_state_push_mode_has_no_read_index_and_unknown_labels(emu: LensEmulator) -> None:
    sid = emu.create_session(
        "machine-state", rate=0, seed=4, options={"mode": "push", "unknown_rate": 0.3}
    )
    emu.step(sid, 100)
    events = _data(emu, sid)
    labels = [e["event_data"]["response"][0] for e in events]  # type: ignore[index]
    assert 10 <= labels.count("unknown") <= 50
    assert all(
        "read_index" not in e["event_data"]["query_metadata"]["query_metadata"]  # type: ignore[index]
        for e in events
    )


def test_embeddings_are_four_by_768(emu: LensEmulator) -> None:
    sid = emu.create_session("embeddings", rate=0, seed=5)
    emu.step(sid, 1)
    vectors = _data(emu, sid)[0]["event_data"]["response"]  # type: ignore[index]
    assert len(vectors) == 4 and all(len(v) == 768 for v in vectors)
    assert all(isinstance(x, float) for x in vectors[0])


def test_error_rate_emits_inference_errors(emu: LensEmulator) -> None:
    sid = emu.create_session("machine-state", rate=0, seed=6, options={"error_rate": 0.25})
    emu.step(sid, 200)
    errors = [e for e in _data(emu, sid) if e["type"] == "inference.error"]
    assert 25 <= len(errors) <= 75
    message = errors[0]["event_data"]["error_messages"][0]  # type: ignore[index]
    assert re.fullmatch(r"query_id: session-modify-qry-[0-9a-f]{12} failed!", message)


def test_session_modify_is_acknowledged_on_the_stream(emu: LensEmulator) -> None:
    sid = emu.create_session()
    requests.post(
        emu.base_url + "/lens/sessions/events/process",
        json={
            "session_id": sid,
            "event": {"type": "session.modify", "event_data": {"class_name": "HEALTHY"}},
        },
        headers=emu.headers,
        timeout=5,
    ).raise_for_status()
    assert _data(emu, sid) == [
        {
            "type": "session.modify.result",
            "event_data": {"query_metadata": {"class_name": "HEALTHY"}},
        }
    ]


def test_a_non_sse_writer_keeps_lens_output_off_the_stream(emu: LensEmulator) -> None:
    sid = emu.create_session("machine-state", rate=0)
    requests.post(
        emu.base_url + "/lens/sessions/events/process",
        json={
            "session_id": sid,
            "event": {"type": "output_stream.set", "event_data": {"stream_type": "websocket"}},
        },
        headers=emu.headers,
        timeout=5,
    ).raise_for_status()
    emu.step(sid, 3)
    stats = emu.session_stats(sid)
    assert stats.num_outputs == 3 and stats.last_id == 0


# --- determinism -----------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    lens=st.sampled_from([n for n, s in LENSES.items() if s.script is not None]),
    seed=st.integers(0, 2**32 - 1),
    index=st.integers(0, 8),
)
def test_scripted_output_depends_only_on_seed_and_index(lens: str, seed: int, index: int) -> None:
    import random

    def run() -> list[dict[str, object]]:
        rng = random.Random(seed)
        return [generate(LENSES[lens], rng, i, {"error_rate": 0.1}) for i in range(index + 1)]

    assert run() == run()


def test_same_seed_same_stream_over_http() -> None:
    def record(seed: int) -> list[str]:
        with LensEmulator(seed=seed) as emu:
            sid = emu.create_session("machine-state", rate=200, count=8)
            frames = take(frames_of(open_stream(emu, sid, last_event_id=0)), 9)
            return [f.data for f in frames[1:]] + [sid]

    assert record(11) == record(11)
    assert record(11) != record(12)


def test_rate_paces_a_scripted_lens_and_count_ends_it(emu: LensEmulator) -> None:
    sid = emu.create_session("alert", rate=50, count=5, destroy_when_done=True)
    started = time.monotonic()
    frames = list(frames_of(open_stream(emu, sid, last_event_id=0)))
    elapsed = time.monotonic() - started
    assert [f.id for f in frames] == [None, "1", "2", "3", "4", "5", None]
    assert frames[-1].type == "sse.stream.end"
    assert 0.08 <= elapsed < 2.0


# --- playback --------------------------------------------------------------------------------


def test_play_at_recorded_pace_scaled_by_speed(emu: LensEmulator) -> None:
    sid = emu.create_session()
    response = open_stream(emu, sid)
    frames = frames_of(response)
    next(frames)
    emu.wait_readers(sid, 1)
    started = time.monotonic()
    emu.play(
        sid,
        [result(i) for i in range(3)],
        offsets=[0.0, 0.2, 0.4],
        speed=2.0,
        destroy_when_done=True,
    )
    arrivals = []
    for frame in frames:
        arrivals.append((frame.id, time.monotonic() - started))
    assert [a[0] for a in arrivals] == ["1", "2", "3", None]
    assert arrivals[1][1] >= 0.09 and arrivals[2][1] >= 0.19
    assert arrivals[2][1] < 1.0


def test_play_at_max_speed_streams_as_the_reader_pulls() -> None:
    n = 20_000
    with LensEmulator(log_size=1000) as emu:  # far smaller than the playback: pull keeps pace
        sid = emu.create_session()
        data = json.dumps(result(0), separators=(",", ":")).encode()
        emu.play(sid, (data for _ in range(n)), destroy_when_done=True)
        sock = raw_get(emu, f"/api/lens/sessions/consumer/{sid}")
        body = read_raw(sock, until=b"sse.stream.end", timeout=20.0)
        sock.close()
        assert body.count(b"\nid: ") == n
        assert b"log.info" not in body  # no gap: nothing was produced faster than it was read
        assert f"id: {n}\n".encode() in body


# --- scale -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_five_hundred_concurrent_readers() -> None:
    with LensEmulator(heartbeat_interval=30.0) as emu:
        sid = emu.create_session()
        socks = [raw_get(emu, f"/api/lens/sessions/consumer/{sid}") for _ in range(500)]
        try:
            emu.wait_readers(sid, 500, timeout=30.0)
            emu.push_many(sid, [result(i) for i in range(3)])
            emu.destroy(sid)
            bodies = [read_raw(s, until=b"sse.stream.end", timeout=20.0) for s in socks]
        finally:
            for s in socks:
                s.close()
        assert all(b.count(b"\nid: ") == 3 and b"sse.stream.end" in b for b in bodies)
        assert len({re.search(rb'"reader_id":"(\w+)"', b).group(1) for b in bodies}) == 500  # type: ignore[union-attr]
