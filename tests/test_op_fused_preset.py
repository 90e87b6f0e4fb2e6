"""The preset's fused typed + heartbeat step against the composed operators, in virtual time.

``client.events()`` decodes frames and watches the heartbeat in one observer
(``_typed_heartbeat_timeout``); the composed ``_typed(...)`` then ``heartbeat_timeout(...)``
stays the reference. The law: on any scripted stream (results, heartbeats, ends, frames with and
without ids, malformed frames under each policy, silences, completion or a drop), both give the
same notifications at the same virtual times (events with their ids and arrival times, errors
with their fields), hold the source for the same span and see the same id-less events.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.errors import StreamClosed
from rxlens.events import LensEvent
from rxlens.operators._heartbeat_timeout import _typed_heartbeat_timeout, heartbeat_timeout
from rxlens.operators._typed import _typed
from rxlens.sse import Event

FRAMES = {
    "result": json.dumps({"type": "inference.result", "event_data": {"response": ["ok"]}}),
    "heartbeat": json.dumps(
        {"type": "sse.stream.heartbeat", "event_data": {"session_id": "lsn-1"}}
    ),
    "end": json.dumps({"type": "sse.stream.end", "event_data": {}}),
    "malformed": "{not json",
    "bad_result": json.dumps({"type": "inference.result", "event_data": {"response": 3}}),
}

scripts = st.tuples(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=12),  # silence before the frame, in seconds
            st.sampled_from(sorted(FRAMES)),
            st.sampled_from([None, "", "1", "2"]),  # the frame's own id
        ),
        max_size=25,
    ),
    st.sampled_from(["complete", "drop", "open"]),
    st.sampled_from(["emit", "skip", "raise"]),
    st.sampled_from([3, 5, 10]),
)


def comparable(message: Any) -> tuple[Any, ...]:
    kind = message.value.kind
    if kind == "N":
        event = message.value.value
        assert isinstance(event, LensEvent)
        return (message.time, kind, type(event), event, event.id, event.received_at, event.raw)
    if kind == "E":
        error = message.value.exception
        fields = (getattr(error, "seconds", None), getattr(error, "last_frame_at", None))
        return (message.time, kind, type(error), str(error), fields)
    return (message.time, kind)


def run(script: Any, fused: bool) -> tuple[list[Any], list[Any], list[Any]]:
    frames, ending, on_malformed, seconds = script
    scheduler = TestScheduler()
    at = 0  # cold: times are from the subscription (200)
    messages = []
    for gap, kind, frame_id in frames:
        at += 1 + gap
        messages.append(ReactiveTest.on_next(at, Event(FRAMES[kind], id=frame_id or "")))
    if ending == "complete":
        messages.append(ReactiveTest.on_completed(at + 1))
    elif ending == "drop":
        messages.append(ReactiveTest.on_error(at + 1, StreamClosed("dropped")))
    source: Any = scheduler.create_cold_observable(*messages)
    unidentified: list[LensEvent] = []
    if fused:
        op = _typed_heartbeat_timeout(seconds, scheduler, on_malformed, unidentified.append)
        pipeline = lambda: source.pipe(op)  # noqa: E731
    else:
        pipeline = lambda: source.pipe(  # noqa: E731
            _typed(on_malformed, unidentified.append), heartbeat_timeout(seconds, scheduler)
        )
    results = scheduler.start(pipeline, disposed=200 + 13 * 26 + 20)
    return (
        [comparable(m) for m in results.messages],
        list(source.subscriptions),
        unidentified,
    )


@settings(max_examples=200, deadline=None)
@given(scripts)
def test_fused_typed_heartbeat_equals_the_composed_operators(script: Any) -> None:
    fused = run(script, fused=True)
    composed = run(script, fused=False)
    assert fused[0] == composed[0]
    assert fused[1] == composed[1]
    assert fused[2] == composed[2]


def test_the_law_sees_each_ending() -> None:
    """The script covers timeouts, malformed failures and drops (the law is not vacuous)."""
    silent = run(([(0, "result", "1"), (11, "heartbeat", None)], "open", "emit", 10), True)
    assert [m[1] for m in silent[0]] == ["N", "E"] and silent[0][-1][2].__name__ == (
        "HeartbeatTimeout"
    )
    raised = run(([(0, "heartbeat", None), (0, "malformed", "2")], "open", "raise", 10), True)
    assert raised[0][-1][2].__name__ == "MalformedEventError"
    assert [m[1] for m in raised[0]] == ["N", "E"]
    skipped = run(([(0, "malformed", "2"), (9, "result", "3")], "drop", "skip", 5), True)
    # The skipped frame re-armed nothing: silence from subscription (200) times out at 205.
    assert [(m[0], m[1]) for m in skipped[0]] == [(205, "E")]
