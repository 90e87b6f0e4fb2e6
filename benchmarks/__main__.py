"""``python -m benchmarks [--quick] [--out DIR] [--only MEASURES] [--contenders KEYS]``: every
contender, every measure, one run.

Starts the loopback server in its own process, runs each contender's measures in fresh child
processes (throughput repetitions interleaved across contenders, so that a load change on the
machine hits all of them alike), and writes ``latest.json`` and ``latest.md`` to ``--out``
(default ``benchmarks/results``, or ``benchmarks/results/quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import mailbox, recording_load, report
from benchmarks.contenders import CONTENDERS, THROUGHPUT_ONLY
from benchmarks.control import Server, start_server, stop_server
from benchmarks.large import MIB

HERE = Path(__file__).resolve().parent
ALL = [k for k in CONTENDERS if k not in THROUGHPUT_ONLY]
#: The throughput measure also runs the reference rows (see contenders.THROUGHPUT_ONLY).
THROUGHPUT = ALL + list(THROUGHPUT_ONLY)
#: The quick run (CI) leaves the asyncio design to its fan-in ladder, to stay within its time.
QUICK_ALL = [k for k in ALL if k != "rxlens-asyncio"]
RXLENS = ["rxlens-typed", "rxlens-raw"]
#: Fan-in ladders of their own (the shared fan-in levels are for thread-per-session designs):
#: contender -> params, in the full run and in the quick run.
FANIN_LADDERS: dict[str, dict[str, Any]] = {
    "rxlens-asyncio": {"levels": [1000, 3000, 10_000], "window": 10},
}
QUICK_FANIN_LADDERS: dict[str, dict[str, Any]] = {
    "rxlens-asyncio": {"levels": [100], "window": 2},
}

#: measure -> (params, contenders). The quick run keeps every code path and drops the volume;
#: the vendor SDK's resume (its back-off sleeps 1 s then 10 s) is left to the full run.
QUICK: dict[str, tuple[dict[str, Any], list[str]]] = {
    "throughput": ({"n": 20_000, "repeats": 1, "timeout": 20}, THROUGHPUT),
    "latency": ({"n": 30, "rate": 100}, QUICK_ALL),
    "large": ({"sizes": [2 * MIB, 8 * MIB], "repeats": 1, "timeout": 3}, QUICK_ALL),
    "first_event": ({"hold": 1.0, "repeats": 1}, QUICK_ALL),
    "dispose": ({"hold": 1.0}, QUICK_ALL),
    "resume": ({"n": 3000, "rate": 10_000, "drop_every": 1000, "timeout": 10}, RXLENS),
    "memory": ({"n": 50_000, "timeout": 30}, ["rxlens-typed", "rxlens-raw", "limit"]),
    "fanin": ({"levels": [50], "window": 2}, ["rxlens-typed"]),
    # Loaders of a recording file, not stream readers: it has its own loaders, no contenders.
    "recording_load": ({"n": 2_000, "timeout": 60}, []),
    # The mailbox channel beside SSE, on the emulator: readers of its own, no contenders.
    "mailbox": (mailbox.QUICK, []),
}
FULL: dict[str, tuple[dict[str, Any], list[str]]] = {
    "throughput": ({"n": 200_000, "repeats": 3, "timeout": 120}, THROUGHPUT),
    "latency": ({"n": 1000, "rate": 100}, ALL),
    "large": ({"sizes": [2 * MIB, 8 * MIB], "repeats": 3, "timeout": 30}, ALL),
    "first_event": ({"hold": 3.0, "repeats": 3}, ALL),
    "dispose": ({"hold": 15.0}, ALL),
    "resume": (
        {"n": 20_000, "rate": 10_000, "drop_every": 1000, "timeout": 60},
        ["rxlens-typed", "rxlens-raw", "vendor-sdk"],
    ),
    "memory": ({"n": 1_000_000, "timeout": 300}, ALL),
    "fanin": (
        # 2,000 sessions (4,000 threads) did not finish within 330 s on the 2-core machine
        # and drove the load average past 3,000: 1,500 is the last level tried.
        {"levels": [100, 500, 1000], "window": 10, "beyond": [1500]},
        ["rxlens-typed", "vendor-sdk"],
    ),
    "recording_load": ({"n": 1_000_000, "timeout": 900}, []),
    "mailbox": (mailbox.FULL, []),
}
#: Measures that share one child process per contender (the rest get a process each).
GROUPED = ("latency", "large", "first_event", "dispose", "resume")


def run_child(
    server: Server, contender: str, plan: list[tuple[str, dict[str, Any]]], timeout: float
) -> list[dict[str, Any]]:
    """Run ``plan`` for ``contender`` in a fresh process; one result per measure."""
    args = [sys.executable, "-m", "benchmarks.child", str(server.port), contender, json.dumps(plan)]
    path = str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=path)
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent
        )
        out, err, note = done.stdout, done.stderr, None
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout)
        err = _text(exc.stderr)
        note = f"killed after {timeout:g} s"
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    seen = {r["measure"] for r in results}
    for measure, _ in plan:
        if measure not in seen:
            tail = err.strip().splitlines()[-1:] if err.strip() else []
            results.append({"measure": measure, "error": note or " ".join(tail) or "no result"})
    return results


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="rxlens against the other SSE readers."
    )
    parser.add_argument("--quick", action="store_true", help="a small run (CI, a minute)")
    parser.add_argument("--out", type=Path, help="where to write latest.json and latest.md")
    parser.add_argument("--only", help="comma-separated measures to run (default: all)", default="")
    parser.add_argument(
        "--contenders",
        default=os.environ.get("RXLENS_BENCH_CONTENDERS", ""),
        help="comma-separated contenders to run (default: all; env RXLENS_BENCH_CONTENDERS)",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    only = [m for m in args.only.split(",") if m]
    if only:
        unknown = set(only) - set(config)
        if unknown:
            parser.error(f"unknown measures: {', '.join(sorted(unknown))}")
        config = {m: v for m, v in config.items() if m in only}
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)

    chosen = [k for k in args.contenders.split(",") if k]
    unknown_keys = set(chosen) - set(CONTENDERS)
    if unknown_keys:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown_keys))}")
    available = [k for k in THROUGHPUT if CONTENDERS[k].available() and (not chosen or k in chosen)]
    missing = [k for k in THROUGHPUT if not CONTENDERS[k].available()]
    ladders = QUICK_FANIN_LADDERS if args.quick else FANIN_LADDERS
    machine = report.machine()
    started = time.monotonic()
    proc, server = start_server()
    results: dict[str, dict[str, Any]] = {k: {} for k in available}
    fanin: dict[str, list[dict[str, Any]]] = {}
    loads: dict[str, Any] | None = None
    mailboxes: dict[str, Any] | None = None
    try:
        if "throughput" in config:
            params, who = config["throughput"]
            runs: list[dict[str, Any]] = []
            for rep in range(int(params["repeats"])):
                for key in [k for k in who if k in available]:
                    _say(f"throughput {key} #{rep + 1}")
                    budget = 60 + params["timeout"]
                    (result,) = run_child(server, key, [("throughput", params)], budget)
                    result["contender"], result["rep"] = key, rep
                    runs.append(result)
            for key in available:
                results[key]["throughput"] = report.summarise_throughput(runs, key)
        for key in available:
            plan = [(m, config[m][0]) for m in GROUPED if m in config and key in config[m][1]]
            if plan:
                _say(f"{', '.join(m for m, _ in plan)}: {key}")
                budget = 60 + sum(_budget(m, p) for m, p in plan)
                for result in run_child(server, key, plan, budget):
                    results[key][result["measure"]] = result
        if "memory" in config:
            params, who = config["memory"]
            for key in [k for k in who if k in available]:
                _say(f"memory {key}")
                (result,) = run_child(server, key, [("memory", params)], 60 + params["timeout"])
                results[key]["memory"] = result
        if "recording_load" in config:
            _say(f"recording load, {config['recording_load'][0]['n']:,} events")
            loads = recording_load.run(config["recording_load"][0])
        if "mailbox" in config:
            _say("mailbox beside SSE, on the emulator")
            mailboxes = mailbox.run(config["mailbox"][0])
        if "fanin" in config:
            machine["load_before_fanin"] = report.load()
            params, who = config["fanin"]
            # The one-thread design's ladder first: the thread-per-session ladders end with
            # thousands of threads (a process killed at its budget, the load average in the
            # hundreds afterwards, measured), which would be charged to whatever runs next.
            for key, ladder in ladders.items():
                if key in available:
                    fanin[key] = run_fanin(server, key, ladder)
            for key in [k for k in who if k in available]:
                fanin[key] = run_fanin(server, key, params)
    finally:
        stop_server(proc)
    machine["load_after"] = report.load()
    data = {
        "quick": args.quick,
        "machine": machine,
        "seconds": round(time.monotonic() - started, 1),
        "contenders": {k: CONTENDERS[k].label for k in available},
        "missing": missing,
        "config": {m: {"params": p, "contenders": c} for m, (p, c) in config.items()},
        "results": results,
        "fanin": fanin,
    }
    data["goals"] = report.goals(data)
    text = report.markdown(data)
    if loads is not None:
        data["recording_load"] = loads
        text += "\n" + recording_load.markdown(loads)
    if mailboxes is not None:
        data["mailbox"] = mailboxes
        text += "\n" + mailbox.markdown(mailboxes, sse=results.get("rxlens-typed"))
    (out / "latest.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "latest.md").write_text(text)
    _say(f"wrote {out / 'latest.json'} and {out / 'latest.md'} in {data['seconds']} s")
    return 0


def run_fanin(server: Server, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each level in its own process; past the listed levels, go on while the load holds."""
    levels = list(params["levels"])
    beyond = list(params.get("beyond", []))
    rows: list[dict[str, Any]] = []
    for level in levels + beyond:
        if level in beyond and rows and not rows[-1].get("held"):
            break
        settled = settle()
        _say(f"fan-in {key} x{level}")
        run = {"sessions": level, "window": params["window"]}
        budget = 120 + level / 10 + params["window"]
        (result,) = run_child(server, key, [("fanin", run)], budget)
        result.setdefault("sessions", level)
        result.update(settled)
        rows.append(result)
    return rows


def settle(idle: float = 0.85, longest: float = 60.0) -> dict[str, Any]:
    """Wait until the machine is quiet: a second in which the CPUs were ``idle`` idle.

    A fan-in level measures delivery lag, which whatever else runs adds to: the previous
    level's process and its sockets winding down, or the server's. Waits at most ``longest``
    seconds; returns how long it waited and the idle share of the last second, for the record.
    """
    started = time.monotonic()
    share = _idle_share(1.0)
    while share is not None and share < idle and time.monotonic() - started < longest:
        share = _idle_share(1.0)
    return {
        "settled_s": round(time.monotonic() - started, 1),
        "idle_before": None if share is None else round(share, 2),
    }


def _idle_share(seconds: float) -> float | None:
    """The share of CPU time spent idle over the next ``seconds`` (None: no /proc/stat)."""

    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all

    first = sample()
    time.sleep(seconds)
    second = sample()
    if first is None or second is None or second[1] == first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1])


def _budget(measure: str, params: dict[str, Any]) -> float:
    if measure == "latency":
        return float(params["n"]) / float(params.get("rate", 100)) + 10
    if measure == "large":
        return float(params["timeout"]) + 2 * len(params["sizes"]) * int(params["repeats"])
    if measure == "first_event":
        return (float(params["hold"]) + 2) * int(params["repeats"])
    if measure == "dispose":
        return float(params["hold"]) + 10
    return float(params.get("timeout", 60))


def _say(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
