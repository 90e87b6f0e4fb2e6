"""Turn a run's results into figures, goal verdicts and the Markdown table."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import median

_PACKAGES = (
    "rxlens",
    "reactivex",
    "requests",
    "urllib3",
    "archetypeai",
    "sseclient-py",
    "httpx",
    "httpx-sse",
)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """Where and when: the figures mean nothing without it."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load_before": load(),
        "commit": commit,
        "versions": versions,
    }


def summarise_throughput(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Median events/s over the repetitions, and the median of the per-repetition ratios to
    the limit measured in the same repetition (ratios within one run are what mean anything)."""
    mine = [r for r in runs if r["contender"] == key]
    limits = {r["rep"]: r.get("events_per_s") for r in runs if r["contender"] == "limit"}
    rates = [r["events_per_s"] for r in mine if r.get("complete")]
    ratios = [
        r["events_per_s"] / limits[r["rep"]]
        for r in mine
        if r.get("complete") and limits.get(r["rep"])
    ]
    errors = [r["error"] for r in mine if r.get("error")]
    best = median(rates)
    ratio = median(ratios)
    cpu = median([r["cpu_us_per_event"] for r in mine if r.get("cpu_us_per_event")])
    return {
        "events_per_s": round(best) if best is not None else None,
        "ratio_to_limit": round(ratio, 3) if ratio is not None else None,
        "cpu_us_per_event": cpu,
        "runs": [r.get("events_per_s") for r in mine],
        "events": mine[0].get("expected") if mine else None,
        "error": errors[0] if errors else None,
    }


def _get(data: dict[str, Any], key: str, measure: str, field: str) -> Any:
    return data["results"].get(key, {}).get(measure, {}).get(field)


def goals(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal of the spec, with the figure measured for rxlens and whether it is met."""
    rows: list[dict[str, Any]] = []

    def add(goal: str, target: str, figure: Any, met: bool | None) -> None:
        rows.append({"goal": goal, "target": target, "measured": figure, "met": met})

    def worst(values: list[Any], high_is_bad: bool = True) -> Any:
        present = [v for v in values if v is not None]
        if len(present) < len(values) or not present:
            return None
        return max(present) if high_is_bad else min(present)

    typed = _get(data, "rxlens-typed", "throughput", "ratio_to_limit")
    raw = _get(data, "rxlens-raw", "throughput", "ratio_to_limit")
    vendor = _get(data, "vendor-sdk", "throughput", "ratio_to_limit")
    add(
        "typed pipeline throughput",
        ">= 0.7x limit",
        f"{typed}x (vendor SDK {vendor}x)" if typed is not None else None,
        None if typed is None else typed >= 0.7,
    )
    raw_loads = _get(data, "rxlens-raw-loads", "throughput", "ratio_to_limit")
    scan_limit = _get(data, "limit-scan", "throughput", "ratio_to_limit")
    add(
        "raw frames throughput (frame.json())",
        ">= 1.0x limit",
        f"{raw}x" if raw is not None else None,
        None if raw is None else raw >= 1.0,
    )
    # The same frames with json.loads's wrapper in the subscriber, and the limit without it:
    # reported beside the goal, so that where the ratio comes from stays visible.
    add(
        "raw frames, the subscriber's own json.loads",
        "(reference)",
        f"{raw_loads}x" if raw_loads is not None else None,
        None,
    )
    add(
        "raw frames (frame.json()) against the limit with the C scanner",
        "(reference)",
        f"{raw / scan_limit:.3f}x" if raw is not None and scan_limit else None,
        None,
    )
    p99 = worst([_get(data, k, "latency", "p99_ms") for k in ("rxlens-typed", "rxlens-raw")])
    limit_p99 = _get(data, "limit", "latency", "p99_ms")
    add(
        "p99 latency, server write to subscriber, 100 ev/s",
        "<= 2 ms",
        f"{p99} ms (limit {limit_p99} ms)" if p99 is not None else None,
        None if p99 is None else p99 <= 2,
    )
    big = worst([_get(data, k, "large", "2MiB_ms") for k in ("rxlens-typed", "rxlens-raw")])
    add("one 2 MiB event", "<= 50 ms", _unit(big, "ms"), None if big is None else big <= 50)
    first = worst([_get(data, k, "first_event", "ms") for k in ("rxlens-typed", "rxlens-raw")])
    add(
        "first event, close-delimited response",
        "<= 5 ms",
        _unit(first, "ms"),
        None if first is None else first <= 5,
    )
    dispose = worst([_get(data, k, "dispose", "ms") for k in ("rxlens-typed", "rxlens-raw")])
    add(
        "dispose while the server is silent",
        "<= 100 ms",
        _unit(dispose, "ms"),
        None if dispose is None else dispose <= 100,
    )
    lost = worst([_get(data, k, "resume", "lost") for k in ("rxlens-typed", "rxlens-raw")])
    dup = worst([_get(data, k, "resume", "duplicated") for k in ("rxlens-typed", "rxlens-raw")])
    n = _get(data, "rxlens-typed", "resume", "expected")
    add(
        f"resume, a drop every 1,000 events ({n} events)",
        "0 lost, 0 duplicated",
        None if lost is None else f"{lost} lost, {dup} duplicated",
        None if lost is None or dup is None else lost == 0 and dup == 0,
    )
    growth = worst([_get(data, k, "memory", "growth_mb") for k in ("rxlens-typed", "rxlens-raw")])
    events = _get(data, "rxlens-typed", "memory", "expected")
    add(
        f"RSS growth over {events:,} events" if events else "RSS growth",
        "<= 20 MB (over 1,000,000)",
        _unit(growth, "MB"),
        None if growth is None else growth <= 20,
    )
    levels = data.get("fanin", {}).get("rxlens-typed", [])
    held = [r["sessions"] for r in levels if r.get("held")]
    most = max(held) if held else None
    add(
        f"sessions in one process ({data['machine']['cores']} cores)",
        ">= 1,000 held",
        f"{most} held" if levels else None,
        None if not levels else (most or 0) >= 1000,
    )
    ladder = data.get("fanin", {}).get("rxlens-asyncio", [])
    good = [
        r["sessions"]
        for r in ladder
        if r.get("held")
        and r.get("lag_p99_ms") is not None
        and r["lag_p99_ms"] <= 50
        and r.get("threads", 99) <= 10
        and r.get("duplicates") == 0
        and r.get("gaps") == 0
        and r.get("delivered", 0) >= 0.99 * r.get("sent", 0)
    ]
    best = max(good) if good else None
    add(
        'sessions on one asyncio thread (io="asyncio")',
        ">= 10,000 at p99 lag <= 50 ms, <= 10 threads, no duplicate or gap",
        f"{best} met" if ladder else None,
        None if not ladder else (best or 0) >= 10_000,
    )
    return rows


def _unit(value: Any, unit: str) -> str | None:
    return None if value is None else f"{value} {unit}"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(result: dict[str, Any] | None, field: str, digits: int = 1) -> str:
    if not result:
        return "n/a"
    if result.get("skipped"):
        return "n/a"
    value = result.get(field)
    if value is None and result.get("error"):
        return "failed" if "timeout" not in str(result["error"]) else "timeout"
    return _fmt(value, digits)


def markdown(data: dict[str, Any]) -> str:
    """The README table: machine and date, one row per contender, goals, fan-in."""
    m = data["machine"]
    v = m["versions"]
    lines = [
        f"Measured {m['date']} on {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, "
        f"{m['platform']}, Python {m['python']} (rxlens {v.get('rxlens')} at {m['commit']}; "
        f"archetypeai {v.get('archetypeai')}, sseclient-py {v.get('sseclient-py')}, "
        f"httpx-sse {v.get('httpx-sse')}, httpx {v.get('httpx')}). Load average "
        f"{', '.join(map(str, m['load_before']))} before the run, "
        + (
            f"{', '.join(map(str, m['load_before_fanin']))} before the fan-in measure "
            "(thousands of threads then raise it) and "
            if m.get("load_before_fanin")
            else ""
        )
        + f"{', '.join(map(str, m.get('load_after', [])))} after it."
        + (" **Quick run: small volumes, not for comparison.**" if data["quick"] else ""),
        "",
        "| contender | events/s | x limit | latency p50 / p99 ms | 2 MiB ms | 8 MiB ms "
        "| first event ms | dispose ms | resume lost / dup / gap ms | RSS growth MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in data["contenders"].items():
        r = data["results"].get(key, {})
        tp = r.get("throughput")
        lat = r.get("latency")
        resume = r.get("resume")
        if not resume or resume.get("skipped"):
            resume_cell = "n/a (no reconnect)" if resume else "n/a"
        elif resume.get("lost") is None:
            resume_cell = _cell(resume, "lost")
        else:
            resume_cell = (
                f"{resume['lost']:,} / {resume['duplicated']:,} / {_fmt(resume.get('gap_p50_ms'))}"
            )
        dispose = r.get("dispose")
        dispose_cell = _cell(dispose, "ms")
        if dispose and dispose.get("ms") is None and dispose.get("hold_s"):
            dispose_cell = f"> {dispose['hold_s']:g} s"
        first = r.get("first_event")
        first_cell = _cell(first, "ms")
        if first and first.get("waited_for_close"):
            first_cell += " (at close)"
        lines.append(
            f"| {label} | {_cell(tp, 'events_per_s')} | {_cell(tp, 'ratio_to_limit', 2)} "
            f"| {_cell(lat, 'p50_ms', 2)} / {_cell(lat, 'p99_ms', 2)} "
            f"| {_cell(r.get('large'), '2MiB_ms')} | {_cell(r.get('large'), '8MiB_ms')} "
            f"| {first_cell} | {dispose_cell} | {resume_cell} "
            f"| {_cell(r.get('memory'), 'growth_mb')} |"
        )
    if data.get("missing"):
        lines += ["", f"Not installed, not measured: {', '.join(data['missing'])}."]
    lines += ["", "| goal (rxlens) | target | measured | met |", "|---|---|---|---|"]
    for g in data["goals"]:
        verdict = "-" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"| {g['goal']} | {g['target']} | {_fmt(g['measured'])} | {verdict} |")
    if data.get("fanin"):
        lines += [
            "",
            "Fan-in, one event per second per session, in one process. The streams come from a "
            "lean loopback server (one asyncio thread, its own process), not the emulator; the "
            "process freezes its heap (`gc.freeze()`) once its sessions are open (see "
            "benchmarks/fanin.py). Each level starts once the CPUs were 85 % idle for a second "
            "(waited at most 60 s; `settled_s` and `idle_before` in latest.json), the one-thread "
            "design's ladder first:",
            "",
            "| contender | sessions | opened in s | CPU % (of one core) | threads | RSS MB "
            "| lag p50 / p99 ms | longest GC ms | delivered / sent | dup / gaps | held |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, rows in data["fanin"].items():
            for row in rows:
                if row.get("error") and "cpu_percent" not in row:
                    lines.append(
                        f"| {data['contenders'][key]} | {row['sessions']:,} "
                        f"| failed: {row['error']} | | | | | | | | no |"
                    )
                    continue
                lines.append(
                    f"| {data['contenders'][key]} | {row['sessions']:,} "
                    f"| {_fmt(row.get('open_s'))} "
                    f"| {_fmt(row['cpu_percent'])} | {row['threads']:,} | {_fmt(row['rss_mb'])} "
                    f"| {_fmt(row['lag_p50_ms'], 2)} / {_fmt(row['lag_p99_ms'], 2)} "
                    f"| {_fmt(row.get('gc_max_pause_ms'))} "
                    f"| {row['delivered']:,} / {row['sent']:,} "
                    f"| {row.get('duplicates', '-')} / {row.get('gaps', '-')} "
                    f"| {_fmt(row['held'])} |"
                )
    return "\n".join(lines) + "\n"
