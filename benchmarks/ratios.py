"""``python -m benchmarks.ratios``: loopback throughput of rxlens against the limit, round by round.

Why it exists: the full run (``python -m benchmarks``) takes most of an hour, and its throughput
is three repetitions. This runs only the throughput measure, for the limit and the rxlens
contenders, each in a fresh child process as the full run does, interleaved round after round,
and gives every ratio against the limit of its own round (a burst of load on a shared machine
hits a round, not one contender). ``--base DIR`` also runs the rxlens contenders of another
checkout of the project (``git archive COMMIT | tar -x -C DIR``) in the same rounds, for a
before/after comparison on one server. Nothing is written to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.control import Server, start_server, stop_server

HERE = Path(__file__).resolve().parent.parent
RXLENS = ("rxlens-raw", "rxlens-raw-loads", "rxlens-typed")


def run_one(server: Server, tree: Path, contender: str, n: int) -> dict[str, Any]:
    """One throughput measure of ``contender`` from the checkout at ``tree``."""
    plan = json.dumps([["throughput", {"n": n, "timeout": 120}]])
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", str(server.port), contender, plan],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tree,
        env=env,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if not results or not results[0].get("complete"):
        raise RuntimeError(f"{contender} ({tree}): {results or done.stderr[-300:]}")
    result: dict[str, Any] = results[0]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ratios", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    args = parser.parse_args(argv)
    runs: list[tuple[str, Path, str]] = [("", HERE, "limit"), ("", HERE, "limit-scan")]
    for contender in RXLENS:
        if args.base is not None:
            runs.append(("base ", args.base.resolve(), contender))
        runs.append(("", HERE, contender))
    ratios: dict[int, list[float]] = {i: [] for i in range(len(runs))}
    cpu: dict[int, list[float]] = {i: [] for i in range(len(runs))}
    proc, server = start_server()
    try:
        for number in range(args.rounds):
            got = [run_one(server, tree, contender, args.events) for _, tree, contender in runs]
            limit = got[0]["events_per_s"]
            shown = []
            for i, result in enumerate(got):
                ratios[i].append(result["events_per_s"] / limit)
                cpu[i].append(result["cpu_us_per_event"])
                shown.append(f"{runs[i][0]}{runs[i][2]} {ratios[i][-1]:.3f}x")
            print(f"round {number + 1}: limit {limit:,.0f} events/s; " + ", ".join(shown[1:]))
    finally:
        stop_server(proc)
    print(f"{args.events} events, {args.rounds} rounds (median, min-max; CPU us per event):")
    for i, (label, _, contender) in enumerate(runs):
        print(
            f"  {label + contender:18} {statistics.median(ratios[i]):.3f}x "
            f"({min(ratios[i]):.3f}-{max(ratios[i]):.3f}); {statistics.median(cpu[i]):.2f} us"
        )


if __name__ == "__main__":
    main()
