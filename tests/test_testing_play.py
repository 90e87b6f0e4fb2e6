"""LensEmulator.play_stream: a drawn stream served over real HTTP arrives as drawn."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from rxlens import LensClient, collect
from rxlens.emulator import Faults, LensEmulator, UnknownSession
from rxlens.events import HEARTBEAT, STREAM_END, STREAM_START, InferenceResult, LensEvent
from rxlens.testing import TimedStream, assert_exactly_once, play_stream
from rxlens.testing.strategies import lens_streams

CONNECTION = (STREAM_START, HEARTBEAT, STREAM_END)


def read_all(emu: LensEmulator, sid: str) -> list[LensEvent]:
    client = LensClient(api_key=emu.api_key, base_url=emu.base_url)
    try:
        events = collect(client.events(sid, heartbeat_timeout=5.0), timeout=30)
    finally:
        client.close()
    return [e for e in events if e.type not in CONNECTION]


@settings(
    max_examples=5,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(lens_streams(lenses=["machine-state", "activity-monitor"], malformed=True, max_results=12))
def test_a_drawn_stream_arrives_through_a_dropping_server_exactly_once(stream: TimedStream) -> None:
    with LensEmulator(heartbeat_interval=0.5, replay="all") as emu:
        sid = emu.create_session("manual", faults=Faults(drop_after=3, drops=1))
        played = emu.play_stream(sid, stream, destroy_when_done=True)
        assert [dataclasses.replace(e, id=None) for e in played] == [
            dataclasses.replace(e, id=None) for e in stream.sent
        ]
        assert [e.id for e in played] == [str(i) for i in range(1, len(played) + 1)]
        assert_exactly_once(read_all(emu, sid), played)


def test_play_stream_at_a_speed_plays_in_the_background() -> None:
    one, two = InferenceResult(["A"], id="1"), InferenceResult(["B"], id="2")
    timed = [(0.0, one), (0.05, two), (0.1, InferenceResult(["B"], id="2"))]  # a replayed copy
    with LensEmulator(heartbeat_interval=0.5, replay="all") as emu:
        sid = emu.create_session("manual")
        played = play_stream(emu, sid, timed, speed=2.0, destroy_when_done=True)
        assert played == [dataclasses.replace(one, id=None), dataclasses.replace(two, id=None)]
        received = read_all(emu, sid)
        assert [e.text for e in received] == ["A", "B"]
        assert [e.id for e in received] == ["1", "2"]


def test_play_stream_ends_the_session_when_the_stream_ends() -> None:
    from rxlens.events import StreamEnd, StreamStart

    timed = [(0.0, StreamStart("lsn-x")), (1.0, InferenceResult(["A"])), (2.0, StreamEnd())]
    with LensEmulator(replay="all") as emu:
        sid = emu.create_session("manual")
        emu.play_stream(sid, timed)
        assert [e.text for e in read_all(emu, sid)] == ["A"]  # completes: the session is gone
        with pytest.raises(UnknownSession):
            emu.play_stream("lsn-nope", timed)
