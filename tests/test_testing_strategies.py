"""rxlens.testing.strategies: every kind drawn, only valid frames unless asked, streams as told."""

from __future__ import annotations

import collections
import importlib
import itertools
import json
import sys

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from rxlens.events import (
    HEARTBEAT,
    STREAM_END,
    STREAM_START,
    InferenceResult,
    LensEvent,
    MalformedEvent,
    parse_event,
    to_json,
)
from rxlens.sinks import MissingDependency
from rxlens.sse import Decoder, Event
from rxlens.testing import TimedStream, data_events
from rxlens.testing.strategies import (
    KINDS,
    LENSES,
    SSEFrames,
    frames,
    kind_of,
    lens_events,
    lens_streams,
)


# The first draw imports the schemas (malformed frames go through marshmallow): not slow data.
def examples(n: int, **kwargs: object) -> settings:
    return settings(
        max_examples=n, suppress_health_check=[HealthCheck.too_slow], deadline=None, **kwargs
    )


def reparse(event: LensEvent) -> LensEvent | None:
    """The event the parser makes of the frame a server would send for ``event``."""
    data = event.raw if isinstance(event, MalformedEvent) else json.dumps(to_json(event))
    return parse_event(Event(data, id=event.id), received_at=event.received_at)


def shape_of(event: LensEvent) -> str | None:
    """The result shape of a drawn event (None: not a result, or no shape of the list)."""
    if not isinstance(event, InferenceResult):
        return None
    if event.embedding is not None:
        return "embedding"
    if event.scores is not None:
        total = sum(event.scores.values())
        if all(float(v).is_integer() for v in event.scores.values()):
            return "votes"
        if abs(total - 100.0) < 1e-6:
            return "percent"
        if abs(total - 1.0) < 1e-6:
            return "probability"
        return None
    if event.text is not None:
        return "alert" if event.text.lower().startswith("alert") else "text"
    return None


def test_every_kind_is_drawn() -> None:
    seen: collections.Counter[str] = collections.Counter()

    @examples(400, database=None, derandomize=True)
    @given(lens_events(malformed=True))
    def draw(event: LensEvent) -> None:
        seen[kind_of(event)] += 1

    draw()
    assert set(seen) == set(KINDS), f"kinds never drawn: {set(KINDS) - set(seen)}"


@pytest.mark.parametrize("shape", ["embedding", "votes", "percent", "probability", "text", "alert"])
def test_every_result_shape_can_be_drawn(shape: str) -> None:
    # A search for each shape, not a count over a fixed number of draws: a count missed the
    # rarer score styles now and then (a lottery); find() fails only if the strategy cannot
    # draw the shape at all.
    found = find(
        lens_events(kinds=["result"]),
        lambda event: shape_of(event) == shape,
        settings=settings(max_examples=5000, database=None, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
    assert shape_of(found) == shape


@examples(300)
@given(lens_events())
def test_drawn_events_round_trip_through_to_json_and_the_parser(event: LensEvent) -> None:
    assert not isinstance(event, MalformedEvent)
    again = reparse(event)
    assert type(again) is type(event)
    assert again == event
    assert to_json(again) == to_json(event)


@examples(200)
@given(lens_events(malformed=True, kinds=["malformed"]))
def test_malformed_frames_parse_as_malformed(event: LensEvent) -> None:
    assert isinstance(event, MalformedEvent)
    assert reparse(event) == event


@examples(50)
@given(lens_events(lenses=["machine-state"], kinds=["result"], ids=False, session_id="lsn-x"))
def test_lens_events_knobs(event: LensEvent) -> None:
    assert isinstance(event, InferenceResult) and event.id is None
    assert event.label is not None and event.scores is not None


@examples(50)
@given(lens_events(kinds=["start", "heartbeat"], session_id="lsn-fixed"))
def test_start_and_heartbeat_carry_the_session(event: LensEvent) -> None:
    assert event.session_id == "lsn-fixed" == event.event_data["session_id"]


@pytest.mark.parametrize(
    "kwargs",
    [{"lenses": ["video"]}, {"lenses": []}, {"kinds": ["nope"]}, {"kinds": ["malformed"]}],
)
def test_lens_events_rejects_bad_knobs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        lens_events(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"min_results": 5, "max_results": 2}, {"rate": 0}, {"heartbeat_interval": 0}],
)
def test_lens_streams_rejects_bad_knobs(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        lens_streams(**kwargs)  # type: ignore[arg-type]


def check_stream(stream: TimedStream, heartbeat_interval: float, start_at: float) -> None:
    times = [at for at, _ in stream]
    assert times == sorted(times) and times[0] == 0.0
    assert stream[0][1].type == STREAM_START
    for at, event in stream:
        assert event.received_at == pytest.approx(start_at + at)
    # Heartbeats in idle stretches: never a longer silence than the interval (rate 1/s here).
    assert all(b - a <= heartbeat_interval + 1e-9 for a, b in itertools.pairwise(times))
    # The end, if any, comes last; a start opens each connection.
    ends = [i for i, (_, e) in enumerate(stream) if e.type == STREAM_END]
    assert ends == ([len(stream) - 1] if stream.ended else [])
    starts = sum(1 for _, e in stream if e.type == STREAM_START)
    assert starts == 1 + stream.drops + stream.restarts
    # Ids increase within a connection, except for the copies a drop replays.
    sent_ids = [int(e.id) for e in stream.sent if e.id is not None]
    restarts_seen = sum(1 for a, b in itertools.pairwise(sent_ids) if b <= a)
    assert restarts_seen <= stream.restarts  # a restart after the last result shows no id
    assert all(b == a + 1 or b == 1 for a, b in itertools.pairwise(sent_ids))
    # Every data event is a sent one or a replayed copy of a sent one.
    data = [e for _, e in stream if e.type not in (STREAM_START, HEARTBEAT, STREAM_END)]
    assert all(any(e == s for s in stream.sent) for e in data)
    assert len(data) >= len(stream.sent)
    if not stream.restarts:
        assert [e for _, e in data_events(list(stream))] == stream.sent
    # Every frame of a stream is one the parser gives back unchanged, too.
    assert all(reparse(e) == e for _, e in stream)


@examples(100)
@given(lens_streams(lenses=LENSES, malformed=True, heartbeat_interval=3.0, start_at=1e9))
def test_streams_are_ordered_and_consistent(stream: TimedStream) -> None:
    check_stream(stream, 3.0, 1e9)
    assert [e for _, e in data_events(stream)] == stream.sent


def test_streams_draw_every_fault_and_their_absence() -> None:
    seen: collections.Counter[str] = collections.Counter()

    @examples(150, database=None)
    @given(lens_streams(min_results=1, max_results=10))
    def draw(stream: TimedStream) -> None:
        seen["drop"] += stream.drops > 0
        seen["restart"] += stream.restarts > 0
        seen["replayed"] += len([e for _, e in stream if e.id]) > len(stream.sent)
        seen["ended"] += stream.ended
        seen["open"] += not stream.ended
        seen["heartbeat"] += any(e.type == HEARTBEAT for _, e in stream)
        seen["clean"] += not (stream.drops or stream.restarts)

    draw()
    assert set(seen) == {"drop", "restart", "replayed", "ended", "open", "heartbeat", "clean"}


@examples(40)
@given(
    lens_streams(
        min_results=3, max_results=6, end=True, drops=False, restarts=False, others=False, ids=False
    )
)
def test_stream_knobs_are_obeyed(stream: TimedStream) -> None:
    assert 3 <= len(stream.sent) <= 6
    assert stream.ended and stream.drops == stream.restarts == 0
    assert all(e.id is None for _, e in stream)
    assert all(isinstance(e, InferenceResult) for e in stream.sent)
    assert stream.sent == [
        e for _, e in stream if e.type not in (STREAM_START, HEARTBEAT, STREAM_END)
    ]


def decode(chunks: list[bytes]) -> list[Event]:
    decoder = Decoder()
    out: list[Event] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()


@examples(60)
@given(frames(lens_streams(malformed=True, max_results=12)))
def test_frames_decode_and_parse_back_to_the_events(drawn: SSEFrames) -> None:
    assert b"".join(drawn.chunks) == drawn.data
    sse = decode(drawn.chunks)
    assert len(sse) == len(drawn.events)
    parsed = [
        parse_event(s, received_at=e.received_at) for s, e in zip(sse, drawn.events, strict=True)
    ]
    assert parsed == drawn.events


@examples(30)
@given(frames(st.just([(0.0, InferenceResult(["é" * 40], id="7"))]), max_chunks=30))
def test_frames_cut_anywhere_even_inside_a_character(drawn: SSEFrames) -> None:
    assert [parse_event(e) for e in decode(drawn.chunks)] == drawn.events


def test_importing_the_strategies_without_hypothesis_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in sys.modules if n == "hypothesis" or n.startswith("hypothesis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # makes `import hypothesis` fail
    monkeypatch.delitem(sys.modules, "rxlens.testing.strategies")
    with pytest.raises(MissingDependency, match=r"needs hypothesis.*pip install hypothesis"):
        importlib.import_module("rxlens.testing.strategies")
    with pytest.raises(ImportError):  # MissingDependency is an ImportError too
        importlib.import_module("rxlens.testing.strategies")
