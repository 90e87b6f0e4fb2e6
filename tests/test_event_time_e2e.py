"""End to end: two Machine State sessions recorded live, re-analysed at full speed and at 10x.

With event time, per-session windows, votes and alerts do not depend on how fast the events
arrive: live, replayed as fast as possible and replayed at 10 times the recorded pace, the
answers are the same.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from reactivex import Observable
from reactivex import operators as ops

from rxlens.emulator import LensEmulator
from rxlens.operators import (
    majority_vote,
    merge_sessions,
    only_results,
    rising_edge,
    typed,
    until_end,
    window_results,
)
from rxlens.recording import replay
from rxlens.sinks import collect, to_jsonl
from rxlens.sse import connect

OPTIONS = {"mean_stretch": {"HEALTHY": 20, "BROKEN": 12}, "period": 0.1}


def answers(source: Observable[Any], timeout: float = 30) -> tuple[Any, ...]:
    """Per-session windows (as ids), votes and BROKEN alerts of one pass over ``source``."""
    shared = source.pipe(only_results(), ops.publish())
    windows = shared.pipe(window_results(seconds=1.0, time="sensor", per_session=True))
    found: dict[str, list[Any]] = {"windows": [], "votes": [], "alerts": []}
    done = threading.Event()
    errors: list[Exception] = []
    windows.pipe(ops.map(lambda w: (w.session_id, w.start, [e.id for e in w], w.late))).subscribe(
        found["windows"].append, errors.append
    )
    votes = windows.pipe(majority_vote())
    votes.subscribe(found["votes"].append, errors.append)
    votes.pipe(
        rising_edge(
            lambda v: v.value == "BROKEN", debounce=1.0, time=lambda v: v.end, per_session=True
        )
    ).subscribe(found["alerts"].append, errors.append, done.set)
    connection = shared.connect()
    try:
        assert done.wait(timeout)
    finally:
        if connection is not None:
            connection.dispose()
    assert errors == []
    return found["windows"], found["votes"], found["alerts"]


def test_two_sessions_give_the_same_answers_live_full_speed_and_at_10x(tmp_path: Path) -> None:
    path = tmp_path / "machines.jsonl"
    with LensEmulator(heartbeat_interval=0.2) as emu:
        sessions = [
            emu.create_session("machine-state", rate=0, seed=seed, options=OPTIONS)
            for seed in (5, 6)
        ]
        sources = {
            sid: connect(emu.consumer_url(sid), headers=emu.headers).pipe(typed(), until_end())
            for sid in sessions
        }
        recorded = merge_sessions(sources).pipe(to_jsonl(path), ops.share())
        result: list[tuple[Any, ...]] = []

        def run_live() -> None:
            result.append(answers(recorded))

        thread = threading.Thread(target=run_live)
        thread.start()
        for sid in sessions:
            emu.wait_readers(sid, 1, timeout=10)
        # Interleave the two sessions unevenly, in bursts, as a network might.
        for _ in range(10):
            emu.step(sessions[0], 7)
            emu.step(sessions[1], 3)
        for _ in range(10):
            emu.step(sessions[1], 7)
            emu.step(sessions[0], 3)
        for sid in sessions:
            emu.destroy(sid)
        thread.join(30)
        assert result, "the live analysis did not end"
    live = result[0]
    windows, votes, alerts = live
    assert {w[0] for w in windows} == set(sessions)
    assert len(votes) == len(windows)
    assert sum(len(w[2]) for w in windows) == 200
    assert alerts, "no BROKEN stretch raised an alert"
    assert all(alert.value == "BROKEN" for alert in alerts)

    full_speed = answers(replay(path))
    paced = answers(replay(path, speed=10.0))
    assert full_speed == live
    assert paced == full_speed
    assert len(collect(replay(path), timeout=10)) >= 200
