"""End to end against the emulator: two sessions merged, windowed, voted, recorded, replayed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reactivex import Observable, compose
from reactivex import operators as ops

from rxlens.analytics import majority_vote as vote
from rxlens.emulator import LensEmulator
from rxlens.events import InferenceResult, LensEvent, StreamEnd
from rxlens.operators import (
    majority_vote,
    merge_sessions,
    only_results,
    typed,
    until_end,
    window_results,
)
from rxlens.recording import read_recording, replay
from rxlens.sinks import collect, to_jsonl
from rxlens.sse import connect

RESULTS_PER_SESSION = 40
WINDOW = 6


def windows_and_votes() -> Callable[[Observable[LensEvent]], Observable[tuple[list[Any], Any]]]:
    """The analysis under test: results in windows of 6, each with its majority label."""
    return compose(
        only_results(),
        window_results(count=WINDOW),
        ops.map(lambda window: (window, vote(window))),
    )


def test_merged_sessions_windows_votes_survive_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    live: list[tuple[list[Any], Any]] = []
    votes: list[Any] = []
    done = threading.Event()
    errors: list[Exception] = []

    with LensEmulator(heartbeat_interval=0.2) as emu:
        sessions = [
            emu.create_session("machine-state", rate=0, seed=seed, options={"unknown_rate": 0.2})
            for seed in (1, 2)
        ]
        sources = {
            sid: connect(emu.consumer_url(sid), headers=emu.headers).pipe(typed(), until_end())
            for sid in sessions
        }
        # One merged, recorded stream feeds both pipelines; connected once both listen.
        recorded = merge_sessions(sources).pipe(to_jsonl(path), ops.publish())
        analysis = recorded.pipe(windows_and_votes())
        voting = recorded.pipe(only_results(), window_results(count=WINDOW), majority_vote())
        subscriptions = [
            voting.subscribe(votes.append, errors.append),
            analysis.subscribe(live.append, lambda e: (errors.append(e), done.set()), done.set),
        ]
        subscriptions.append(recorded.connect())
        try:
            for sid in sessions:
                emu.wait_readers(sid, 1, timeout=10)
            for sid in sessions:
                emu.step(sid, RESULTS_PER_SESSION)
            for sid in sessions:
                emu.destroy(sid)
            assert done.wait(timeout=30), "the merged stream did not end"
        finally:
            for subscription in subscriptions:
                if subscription is not None:
                    subscription.dispose()

    assert errors == []
    # Nothing lost: every result of both sessions is in exactly one window, tagged.
    results = [event for window, _ in live for event in window]
    assert all(isinstance(event, InferenceResult) for event in results)
    for sid in sessions:
        assert len([e for e in results if e.session_id == sid]) == RESULTS_PER_SESSION
    assert len(live) == -(-2 * RESULTS_PER_SESSION // WINDOW)
    assert [v for _, v in live] == votes  # the operator agrees with the plain function

    # The recording holds every frame, the ends of both streams included.
    recorded_events = list(read_recording(path))
    assert sum(isinstance(e, StreamEnd) for e in recorded_events) == 2
    assert {e.session_id for e in recorded_events} == set(sessions)

    # Replaying it through the same pipeline gives the same windows and the same votes.
    replayed = collect(replay(path).pipe(windows_and_votes()), timeout=30)
    assert replayed == live
    assert [[e.received_at for e in w] for w, _ in replayed] == [
        [e.received_at for e in w] for w, _ in live
    ]
    paced = collect(replay(path, speed=50.0).pipe(windows_and_votes()), timeout=30)
    assert paced == live
