"""The fused preset against the composed operators it replaces, in virtual time.

``client.events()`` runs ``events_preset`` (rxlens.sse._fused underneath): typed, heartbeat,
resume and until_end as one operator, fed a read chunk at a time by an SSE source. The law: on
any scripted run of connections (chunks of results, heartbeats, ends, malformed frames, ids
that repeat, replay or go back, silences, drops, completion, a subscriber that raises) the
fused preset and ``typed -> heartbeat_timeout -> resume -> until_end`` give the same
notifications at the same virtual times, the same connection states with their notes, the same
warnings, the same id-less events and the same cursor, whether the fused preset is fed whole
chunks (an SSE source) or one frame at a time (any other source).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.testing import TestScheduler

from rxlens.errors import MalformedEventError, StreamClosed, TransportError, is_downstream
from rxlens.events import LensEvent
from rxlens.operators import (
    Narrowable,
    events_preset,
    heartbeat_timeout,
    only_results,
    resume,
    typed,
    until_end,
)
from rxlens.retry import RetryPolicy
from rxlens.sse import ConnectionState, Event, SSESource
from rxlens.sse._delivery import FrameObserver, deliver

URL = "http://lens.test/api/lens/sessions/consumer/lsn-1"


def _result(n: int) -> str:
    return json.dumps({"type": "inference.result", "event_data": {"response": [f"r{n}"]}})


FRAMES = {
    "r1": _result(1),
    "r2": _result(2),
    "r3": _result(3),
    "heartbeat": json.dumps(
        {"type": "sse.stream.heartbeat", "event_data": {"session_id": "lsn-1"}}
    ),
    "end": json.dumps({"type": "sse.stream.end", "event_data": {}}),
    "malformed": "{not json",
    "bad_result": json.dumps({"type": "inference.result", "event_data": {"response": 3}}),
    "log": json.dumps({"type": "log.info", "event_data": {"message": "hi"}}),
}


class Oops(Exception):
    """The subscriber's own exception."""


class Scripted(SSESource):
    """An SSE source that plays one scripted connection per subscription in virtual time.

    Each chunk is delivered as the real read loop does (:func:`deliver`, which hands a
    ``FrameObserver`` the whole chunk); the cursor moves as the real source's does.
    """

    def __init__(self, scheduler: TestScheduler, connections: list[Any]) -> None:
        super().__init__(URL)
        self.clock = scheduler
        self.connections = connections
        self.opened = 0

    def _subscribe_core(
        self, observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        chunks, ending = (
            self.connections[self.opened] if self.opened < len(self.connections) else ([], "open")
        )
        self.opened += 1
        aborted = [False]
        work: list[abc.DisposableBase] = []
        at = 0.0

        def stop() -> None:
            aborted[0] = True

        def end_with(error: Exception | None) -> None:
            if aborted[0]:
                return  # disposed: the real source reports "closed" and says nothing more
            aborted[0] = True
            if error is None:
                observer.on_completed()
            else:
                observer.on_error(error)

        for gap, frames in chunks:
            at += gap

            def play(_s: Any, _st: Any, frames: list[Event] = frames) -> None:
                if aborted[0]:
                    return
                ended = deliver(frames, observer, self, lambda: aborted[0])
                if ended is not None:
                    end_with(ended)
                elif not aborted[0] and frames:  # as the read loop: no cursor once disposed
                    self.last_event_id = frames[-1].last_event_id

            work.append(self.clock.schedule_relative(at, play))
        if ending != "open":
            error = {
                "complete": None,
                "drop": StreamClosed("dropped"),
                "broken": TransportError("connection broke"),
            }[ending]
            work.append(self.clock.schedule_relative(at + 1, lambda _s, _st: end_with(error)))
        return CompositeDisposable(*work, Disposable(stop))


ids = st.sampled_from([None, "", "1", "2", "3", "9", "10"])
chunk = st.tuples(
    st.integers(min_value=0, max_value=8),
    st.lists(st.tuples(st.sampled_from(sorted(FRAMES)), ids), min_size=1, max_size=4),
)
connection = st.tuples(
    st.lists(chunk, max_size=5), st.sampled_from(["complete", "drop", "broken", "open"])
)
scenarios = st.fixed_dictionaries(
    {
        "connections": st.lists(connection, min_size=1, max_size=4),
        "on_malformed": st.sampled_from(["emit", "skip", "raise"]),
        "seconds": st.sampled_from([None, 3.0, 7.0]),
        "raise_at": st.sampled_from([None, 1, 3]),
        "cursor": st.booleans(),
        "start_id": st.sampled_from(["", "2"]),
        # resume's memory of delivered ids: none, two, or a byte budget of two entries
        "memory": st.sampled_from([{}, {"remember": 0}, {"remember": 2},
                                   {"remember_bytes": 140}]),
    }
)


def as_frames(connections: list[Any], start_id: str) -> list[Any]:
    """The scripted text as the decoder would give it: ids, with the stream's last id."""
    played = []
    last = start_id
    for chunks, ending in connections:
        out = []
        for gap, frames in chunks:
            events = []
            for name, frame_id in frames:
                if frame_id is not None:
                    last = frame_id
                events.append(Event(FRAMES[name], "message", last, frame_id))
            out.append((gap, events))
        played.append((out, ending))
    return played


class Recorder(abc.ObserverBase[LensEvent]):
    def __init__(self, scheduler: TestScheduler, raise_at: int | None) -> None:
        self.scheduler = scheduler
        self.raise_at = raise_at
        self.seen: list[Any] = []

    def on_next(self, value: LensEvent) -> None:
        self.seen.append((self.scheduler.clock, "N", type(value), value, value.id,
                          value.received_at, value.raw))
        if self.raise_at is not None and len(self.seen) == self.raise_at:
            raise Oops(f"the subscriber failed on {value.raw!r}")

    def on_error(self, error: Exception) -> None:
        fields = (getattr(error, "seconds", None), getattr(error, "last_frame_at", None),
                  getattr(error, "attempts", None), is_downstream(error))
        self.seen.append((self.scheduler.clock, "E", type(error), str(error), fields))

    def on_completed(self) -> None:
        self.seen.append((self.scheduler.clock, "C"))


def state_of(state: ConnectionState) -> tuple[Any, ...]:
    error = state.error
    return (state.kind, state.url, state.last_event_id, state.attempt, state.delay,
            type(error), str(error), state.at, state.note)


def run(scenario: dict[str, Any], how: str, only: bool = False) -> dict[str, Any]:
    scheduler = TestScheduler()
    source = Scripted(scheduler, as_frames(scenario["connections"], scenario["start_id"]))
    source.last_event_id = scenario["start_id"]
    states: list[Any] = []
    unidentified: list[Any] = []
    policy = RetryPolicy(base=1.0, jitter=0.0, max_attempts=3, reset_after=5.0)
    cursor = source if scenario["cursor"] else None
    seconds = scenario["seconds"]

    def on_state(state: ConnectionState) -> None:
        states.append(state_of(state))

    def note(event: LensEvent) -> None:
        unidentified.append((scheduler.clock, event.raw))

    upstream: reactivex.Observable[Event] = source
    if how == "composed":
        stages: list[Any] = [typed(scenario["on_malformed"], on_unidentified=note)]
        if seconds is not None:
            stages.append(heartbeat_timeout(seconds, scheduler))
        stages += [resume(policy, cursor=cursor, on_state=on_state, scheduler=scheduler,
                          **scenario["memory"]),
                   until_end()]
        pipeline = upstream.pipe(*stages)
    else:
        if how == "fused, frame by frame":
            # Not an SSE source: the preset is fed one on_next per frame.
            upstream = reactivex.defer(lambda _: source)
        pipeline = upstream.pipe(
            events_preset(
                heartbeat_timeout=seconds,
                policy=policy,
                cursor=cursor,
                on_malformed=scenario["on_malformed"],
                on_unidentified=note,
                on_state=on_state,
                heartbeat_scheduler=scheduler,
                scheduler=scheduler,
                **scenario["memory"],
            )
        )
    if only:
        # After the preset, only_results() filters inside it (a Narrowable); after the
        # composed operators it is the filter.
        assert isinstance(pipeline, Narrowable) == (how != "composed")
        pipeline = pipeline.pipe(only_results())
    recorder = Recorder(scheduler, scenario["raise_at"])
    subscription: list[abc.DisposableBase] = []
    scheduler.schedule_absolute(
        0.0, lambda _s, _st: subscription.append(pipeline.subscribe(recorder, scheduler=scheduler))
    )
    scheduler.schedule_absolute(200.0, lambda _s, _st: subscription[0].dispose())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler.start()
    return {
        "seen": recorder.seen,
        "states": states,
        "warnings": [str(w.message) for w in caught],
        "unidentified": unidentified,
        "cursor": source.last_event_id,
        "connections": source.opened,
    }


@settings(max_examples=300, deadline=None)
@given(scenarios)
def test_the_fused_preset_is_the_composed_operators(scenario: dict[str, Any]) -> None:
    composed = run(scenario, "composed")
    assert run(scenario, "fused, a chunk at a time") == composed
    assert run(scenario, "fused, frame by frame") == composed


@settings(max_examples=200, deadline=None)
@given(scenarios)
def test_only_results_after_the_preset_is_only_results_after_the_operators(
    scenario: dict[str, Any],
) -> None:
    composed = run(scenario, "composed", only=True)
    assert run(scenario, "fused, a chunk at a time", only=True) == composed
    assert run(scenario, "fused, frame by frame", only=True) == composed


def test_the_law_sees_replays_ids_going_back_and_each_ending() -> None:
    # The law's scripts reach the cases it is about: a replay dropped, ids going back (with
    # their note), a heartbeat timeout, retries exhausted, a subscriber's exception, the end.
    replay = {
        "connections": [
            ([(1, [("r1", "1"), ("r2", "2")])], "drop"),
            ([(1, [("r1", "1"), ("r2", "2"), ("r3", "3")]), (1, [("r1", "1")])], "open"),
            ([(1, [("r2", "2"), ("r3", "1"), ("end", None), ("r3", "9")])], "complete"),
        ],
        "on_malformed": "emit",
        "seconds": 3.0,
        "raise_at": None,
        "cursor": True,
        "start_id": "",
        "memory": {},
    }
    composed = run(replay, "composed")
    raws = [entry[6] for entry in composed["seen"] if entry[1] == "N"]
    # 1 2 | 1 2 replayed (dropped), 3, then 1 again after the replay: delivered | after the
    # heartbeat timeout, 2 replayed (dropped), 3 with an old id (went back), the end.
    assert raws == [FRAMES["r1"], FRAMES["r2"], FRAMES["r3"], FRAMES["r1"], FRAMES["r3"],
                    FRAMES["end"]]
    assert composed["seen"][-1][1] == "C"
    kinds = [state[0] for state in composed["states"]]
    assert kinds == ["backing_off", "backing_off", "open"]
    assert "went back" in composed["states"][2][-1]
    assert any("went back" in w for w in composed["warnings"])
    assert "HeartbeatTimeout" in repr(composed["states"][1][5])
    assert run(replay, "fused, a chunk at a time") == composed
    assert run(replay, "fused, frame by frame") == composed

    failing = dict(replay, raise_at=2)
    composed = run(failing, "composed")
    assert composed["seen"][-1][2] is Oops and composed["seen"][-1][4][3]  # marked, not retried
    assert composed["connections"] == 1
    assert run(failing, "fused, a chunk at a time") == composed

    malformed = dict(replay, on_malformed="raise",
                     connections=[([(1, [("r1", "1"), ("malformed", "2")])], "open")])
    composed = run(malformed, "composed")
    assert composed["seen"][-1][2] is MalformedEventError
    assert run(malformed, "fused, a chunk at a time") == composed


def test_the_preset_refuses_what_the_operators_refuse() -> None:
    with pytest.raises(ValueError, match="on_malformed"):
        events_preset(on_malformed="loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds"):
        events_preset(heartbeat_timeout=0)


@pytest.mark.parametrize(
    ("memory", "oldest"),
    [({"remember": 50}, 350), ({"remember_bytes": 49 * 67 + 60}, 351)],
)
def test_the_memory_forgets_the_same_ids_after_many_events(
    memory: dict[str, int], oldest: int
) -> None:
    # A long run fills resume's memory (50 ids, or 49 ids of 3 characters within the bytes),
    # then a reconnect replays from ``oldest`` (all remembered: all dropped) or from the one
    # before it (forgotten: it and all after it are delivered again). The fused preset
    # forgets exactly what resume forgets.
    first = [(0, [("r1", str(n)) for n in range(100, 400)])]
    for start, dropped in ((oldest, True), (oldest - 1, False)):
        replay = [(1, [("r1", str(n)) for n in range(start, 400)] + [("end", None)])]
        composed = _fused_equals_composed(_drop_then_replay(first, replay, memory))
        again = [entry[4] for entry in composed["seen"][300:] if entry[1] == "N"]
        assert again == ([None] if dropped else [str(n) for n in range(start, 400)] + [None])


def _drop_then_replay(
    first: list[Any], replay: list[Any], memory: dict[str, int]
) -> dict[str, Any]:
    """A connection dropped after ``first``, then one that sends ``replay`` and completes."""
    return {
        "connections": [(first, "drop"), (replay, "complete")],
        "on_malformed": "emit",
        "seconds": None,
        "raise_at": None,
        "cursor": True,
        "start_id": "",
        "memory": memory,
    }


def _fused_equals_composed(scenario: dict[str, Any]) -> dict[str, Any]:
    """Runs ``scenario`` composed and fused (by chunks, frame by frame); all three equal."""
    composed = run(scenario, "composed")
    assert run(scenario, "fused, a chunk at a time") == composed
    assert run(scenario, "fused, frame by frame") == composed
    return composed


@pytest.mark.parametrize("long_at", [0, 20, 25, 29])
def test_the_memory_counts_its_bytes_from_the_first_long_id_as_resume_does(long_at: int) -> None:
    # 8 ids of 3 characters fill the byte budget exactly, so the fused preset does not count
    # the bytes while ids are that short; one id of 40 characters (at ``long_at``) makes the
    # budget bind while it is remembered. Replays from every point then show what each
    # remembers (after the last 8 ids, the 40-character one among them or not): the
    # fused preset forgets exactly what resume forgets.
    ids = [str(n) for n in range(100, 130)]
    ids.insert(long_at, "x" * 40)
    first = [(0, [("r1", i) for i in ids])]
    memory = {"remember": 8, "remember_bytes": 8 * (64 + 3)}
    for start in range(len(ids) - 12, len(ids)):
        replay = [(1, [("r1", i) for i in ids[start:]] + [("end", None)])]
        _fused_equals_composed(_drop_then_replay(first, replay, memory))


def _results(ids: range) -> bytes:
    return b"".join(
        b'id: %d\ndata: {"type":"inference.result","event_data":{"response":["r%d"]}}\n\n' % (i, i)
        for i in ids
    )


@pytest.mark.parametrize("how", ["composed", "fused", "raw frames"])
def test_a_subscriber_that_disposes_mid_chunk_stops_the_chunk_and_the_cursor(how: str) -> None:
    # Over a real socket, 50 results in one write (one read chunk), then silence: the
    # subscriber disposes on the 10th. Nothing after it is delivered, the cursor stays at the
    # 10th (the next subscription resumes after it), and the reader thread ends.
    import threading

    from tests.sse_server import ScriptedServer, sse

    with ScriptedServer() as server:
        server.add(sse(_results(range(1, 51)), then="hold"))
        source = SSESource(server.url)
        pipeline: reactivex.Observable[Any]
        if how == "raw frames":
            pipeline = source
        elif how == "composed":
            pipeline = source.pipe(
                typed(), heartbeat_timeout(30.0), resume(cursor=source), until_end()
            )
        else:
            pipeline = source.pipe(events_preset(heartbeat_timeout=30.0, cursor=source))
        seen: list[str | None] = []
        ready = threading.Event()
        stopped = threading.Event()
        holder: list[abc.DisposableBase] = []

        def on_next(event: LensEvent | Event) -> None:
            seen.append(event.id)
            if len(seen) == 10:
                ready.wait(5)
                holder[0].dispose()
                stopped.set()

        readers = {t for t in threading.enumerate() if t.name == "rxlens-sse-reader"}
        holder.append(pipeline.subscribe(on_next))
        ready.set()
        assert stopped.wait(10)
        for thread in threading.enumerate():
            if thread.name == "rxlens-sse-reader" and thread not in readers:
                thread.join(5)
                assert not thread.is_alive()
        assert seen == [str(n) for n in range(1, 11)]
        assert source.last_event_id == "10"


class Queued(SSESource):
    """A source whose connections wait ``wait`` seconds to open (a client's queue of
    connections to open, or a slow connect), then send ``frames`` at ``at`` seconds after
    opening and stay silent."""

    def __init__(self, scheduler: TestScheduler, wait: float, at: list[float]) -> None:
        super().__init__(URL)
        self.clock = scheduler
        self.wait = wait
        self.at = at
        self.opened = 0

    def _subscribe_core(
        self, observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        assert isinstance(observer, FrameObserver)
        self.opened += 1
        observer.on_connecting()
        work = [self.clock.schedule_relative(self.wait, lambda _s, _st: observer.on_open())]
        for n, offset in enumerate(self.at, start=1):
            frame = Event(FRAMES["r1"], id=str(n))
            work.append(
                self.clock.schedule_relative(
                    self.wait + offset,
                    lambda _s, _st, frame=frame: deliver([frame], observer, self, lambda: False),
                )
            )
        return CompositeDisposable(*work)


def test_the_heartbeat_counts_from_the_open_not_while_the_connection_waits_to_open() -> None:
    # 10,000 sessions on one I/O thread queue to open: a session still waiting after 15 s is
    # no silent server. The heartbeat counts from the response head: here 40 s of waiting,
    # a result 5 s after the open, then silence until the timeout 15 s after that result.
    scheduler = TestScheduler()
    source = Queued(scheduler, wait=40.0, at=[5.0])
    recorder = Recorder(scheduler, None)
    states: list[ConnectionState] = []
    pipeline = source.pipe(
        events_preset(
            heartbeat_timeout=15.0,
            policy=RetryPolicy(max_attempts=1),
            cursor=source,
            on_state=states.append,
            heartbeat_scheduler=scheduler,
            scheduler=scheduler,
        )
    )
    scheduler.schedule_absolute(0.0, lambda _s, _st: pipeline.subscribe(recorder))
    scheduler.schedule_absolute(100.0, lambda _s, _st: scheduler.stop())
    scheduler.start()
    assert [(at, kind) for at, kind, *_ in recorder.seen] == [(45.0, "N")]
    failures = [(s.at, type(s.error).__name__) for s in states if s.error is not None]
    # The first failure is the heartbeat's, 15 s after the result; none while waiting.
    assert failures[0] == (60.0, "HeartbeatTimeout"), states
