"""``python -m benchmarks.fleet``: a fleet of sessions on 2 Ray workers, with a worker killed.

The emulator runs in this process; a feeder thread pushes a stamped result into every session at
a steady rate; ``run_fleet`` reads them on two restartable actors into a SQLite store. Halfway
through, worker 0's process is killed with SIGKILL. Reported per level (number of sessions):

- sessions held, and results committed per second over the run;
- p50 / p99 lag from the push to the commit (the store's commit time), and the p99 of the
  sessions on the workers that were not killed;
- restart-to-resume: from the SIGKILL to the first commit of worker 0's sessions by its new
  process;
- lost and duplicated results: the committed ids against the emulator's log.

Writes ``benchmarks/results/fleet.json`` (or ``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_level(sessions: int, rate: float, seconds: float, workers: int) -> dict[str, Any]:
    import ray

    from rxlens.emulator import LensEmulator
    from rxlens.fleet import SqliteCursors, run_fleet, worker_of
    from rxlens.operators import only_results

    folder = Path(tempfile.mkdtemp(prefix="rxlens-fleet-bench-"))
    store = SqliteCursors(folder / "fleet.db")
    with LensEmulator(replay="all", heartbeat_interval=2.0, log_size=100_000) as emu:
        sids = [emu.create_session("manual") for _ in range(sessions)]
        fleet = run_fleet(
            sids, store=store, pipeline=only_results(), num_workers=workers,
            base_url=emu.base_url, api_key=emu.api_key, name=f"bench-{sessions}",
        )
        stop = threading.Event()

        def feed() -> None:
            n = 0
            interval = 1.0 / rate
            next_at = time.monotonic()
            while not stop.is_set():
                n += 1
                for sid in sids:
                    emu.push(sid, {"type": "inference.result",
                                   "event_data": {"response": [f"r{n}"], "sent_at": time.time()}})
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

        feeder = threading.Thread(target=feed, daemon=True)
        started = time.time()
        feeder.start()
        time.sleep(seconds / 2)
        victim_sessions = [s for s in sids if worker_of(s, workers) == 0]
        pid = ray.get(fleet.actors[0].pid.remote())
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        time.sleep(seconds / 2)
        stop.set()
        feeder.join()
        # Let the fleet catch up with what was pushed, then stop it.
        deadline = time.monotonic() + 60
        expected = {sid: [str(i) for i, _ in emu.events(sid)] for sid in sids}
        while time.monotonic() < deadline:
            if all(r.events >= len(expected[r.session_id]) for r in store.sessions()):
                break
            time.sleep(0.2)
        ended = time.time()
        fleet.stop()
    db = sqlite3.connect(folder / "fleet.db")
    lags: list[float] = []
    others: list[float] = []  # lags of the sessions on the workers that were not killed
    lost = duplicated = 0
    resumed_at = None
    for sid in sids:
        rows = db.execute(
            "SELECT event_id, record, committed FROM results WHERE session_id = ? ORDER BY seq",
            (sid,),
        ).fetchall()
        ids = [r[0] for r in rows]
        lost += len(set(expected[sid]) - set(ids))
        duplicated += len(ids) - len(set(ids))
        for _id, record, committed in rows:
            raw = json.loads(json.loads(record)["raw"])
            lag = committed - raw["event_data"]["sent_at"]
            lags.append(lag)
            if sid not in victim_sessions:
                others.append(lag)
            if sid in victim_sessions and committed > killed_at + 0.05:
                resumed_at = committed if resumed_at is None else min(resumed_at, committed)
    committed_total = len(lags)
    return {
        "sessions": sessions,
        "workers": workers,
        "rate_per_session": rate,
        "seconds": round(ended - started, 2),
        "committed": committed_total,
        "committed_per_s": round(committed_total / (ended - started), 1),
        "lag_p50_ms": round(percentile(lags, 0.5) * 1000, 1),
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
        "lag_p99_other_workers_ms": round(percentile(others, 0.99) * 1000, 1),
        "restart_to_resume_s": None if resumed_at is None else round(resumed_at - killed_at, 2),
        "lost": lost,
        "duplicated": duplicated,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--levels", default="20,100", help="sessions per run, comma-separated")
    parser.add_argument("--rate", type=float, default=2.0, help="results per second per session")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fleet.json")
    args = parser.parse_args(argv)

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="rxlens-bench")
    try:
        rows = [
            run_level(int(level), args.rate, args.seconds, args.workers)
            for level in args.levels.split(",")
        ]
    finally:
        ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"fleet": rows}, indent=2) + "\n")
    head = ("sessions", "committed_per_s", "lag_p50_ms", "lag_p99_ms",
            "lag_p99_other_workers_ms", "restart_to_resume_s", "lost", "duplicated")
    print(" | ".join(head))
    for row in rows:
        print(" | ".join(str(row[h]) for h in head))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
