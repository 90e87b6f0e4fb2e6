"""Recording load: a JSONL recording into a DataFrame, events/s and peak RSS, per loader.

Offline analysis starts by loading a recording. This measure writes one recording of ``n``
events (two Machine State sessions, results with scores, a heartbeat every 50 events) and
loads it with each loader in a fresh process, so that each peak RSS is its own:

- ``rxlens-columnar``: :func:`rxlens.columnar.load_recording`;
- ``rxlens-typed``: :func:`rxlens.to_dataframe` over :func:`rxlens.recording.read_recording`
  (one event object per row);
- ``pandas-read_json``: ``pandas.read_json(path, lines=True)`` (records only: the frames stay
  text);
- ``orjson-columns``: a hand-written loop, ``orjson`` for the record and its frame, into
  column lists (the floor of what pure Python can do);
- ``polars-ndjson``: ``polars.read_ndjson`` (records only), if polars is installed.

Peak RSS is the process's ``ru_maxrss`` after the load; the growth subtracts the RSS measured
after the imports, before the load. ``python -m benchmarks.recording_load LOADER PATH`` is the
child; :func:`run` the parent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import rss_bytes

MB = 1e6
LOADERS = (
    "rxlens-columnar",
    "rxlens-typed",
    "pandas-read_json",
    "orjson-columns",
    "polars-ndjson",
)


def available(loader: str) -> bool:
    needs = {"orjson-columns": "orjson", "polars-ndjson": "polars"}.get(loader, "pandas")
    return importlib.util.find_spec(needs) is not None


def generate(path: str | os.PathLike[str], n: int, seed: int = 0) -> int:
    """Write a recording of ``n`` events; returns its size in bytes."""
    rng = random.Random(seed)
    start = 1741843200.0
    sessions = ("lsn-a1b2c3d4e5f60718", "lsn-f0e1d2c3b4a59687")
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            session = sessions[i % 2]
            at = start + i * 0.01
            if i % 50 == 49:
                raw = json.dumps(
                    {
                        "type": "sse.stream.heartbeat",
                        "event_data": {"session_id": session, "session_status": "3"},
                    },
                    separators=(",", ":"),
                )
                kind = "sse.stream.heartbeat"
            else:
                broken = rng.randrange(6)
                label = "BROKEN" if broken >= 3 else "HEALTHY"
                meta = {
                    "query_timestamp": at,
                    "query_metadata": {"file_id": "data.csv", "window_size": 100,
                                       "read_index": i * 100, "total_rows": n * 100},
                }
                raw = json.dumps(
                    {
                        "type": "inference.result",
                        "event_data": {
                            "response": [label, {"HEALTHY": 5 - broken, "BROKEN": broken}],
                            "query_metadata": meta,
                        },
                    },
                    separators=(",", ":"),
                )
                kind = "inference.result"
            record = {"v": 1, "id": str(i // 2 + 1), "received_at": at + 0.003,
                      "session_id": session, "type": kind, "raw": raw}
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return os.path.getsize(path)


# --- the loaders (run in the child) ------------------------------------------------------------


def _rxlens_columnar(path: str) -> int:
    from rxlens.columnar import load_recording

    return len(load_recording(path))


def _rxlens_typed(path: str) -> int:
    from rxlens import to_dataframe
    from rxlens.recording import read_recording

    return len(to_dataframe(read_recording(path)))


def _pandas_read_json(path: str) -> int:
    import pandas

    return len(pandas.read_json(path, lines=True))


def _orjson_columns(path: str) -> int:
    import orjson
    import pandas

    columns: dict[str, list[Any]] = {
        k: [] for k in ("received_at", "session_id", "id", "type", "text", "query_timestamp")
    }
    with open(path, "rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            frame = orjson.loads(record["raw"])
            data = frame.get("event_data") or {}
            response = data.get("response")
            meta = data.get("query_metadata") or {}
            columns["received_at"].append(record["received_at"])
            columns["session_id"].append(record["session_id"])
            columns["id"].append(record["id"])
            columns["type"].append(record["type"])
            columns["text"].append(response[0] if isinstance(response, list) else None)
            columns["query_timestamp"].append(meta.get("query_timestamp"))
    return len(pandas.DataFrame(columns))


def _polars_ndjson(path: str) -> int:
    import polars

    return int(polars.read_ndjson(path).height)


_RUN = {
    "rxlens-columnar": _rxlens_columnar,
    "rxlens-typed": _rxlens_typed,
    "pandas-read_json": _pandas_read_json,
    "orjson-columns": _orjson_columns,
    "polars-ndjson": _polars_ndjson,
}
_IMPORTS = {
    "rxlens-columnar": ("pandas", "orjson", "rxlens.columnar"),
    "rxlens-typed": ("pandas", "rxlens", "rxlens.recording"),
    "pandas-read_json": ("pandas",),
    "orjson-columns": ("pandas", "orjson"),
    "polars-ndjson": ("polars",),
}


def child(loader: str, path: str) -> dict[str, Any]:
    """Load ``path`` once with ``loader`` in this process; events/s and RSS."""
    for module in _IMPORTS[loader]:
        importlib.import_module(module)
    base = rss_bytes()
    started = time.perf_counter()
    cpu_started = time.process_time()
    rows = _RUN[loader](path)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "loader": loader,
        "rows": rows,
        "seconds": round(seconds, 3),
        "events_per_s": round(rows / seconds) if seconds > 0 else None,
        # On a shared machine the wall clock counts the other processes' load too.
        "cpu_s": round(cpu, 3),
        "events_per_cpu_s": round(rows / cpu) if cpu > 0 else None,
        "base_mb": round(base / MB, 1),
        "peak_rss_mb": round(peak / MB, 1),
        "peak_growth_mb": round((peak - base) / MB, 1),
    }


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Write a recording of ``params["n"]`` events and load it with every installed loader."""
    n = int(params["n"])
    timeout = float(params.get("timeout", 600))
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "recording.jsonl")
        size = generate(path, n)
        rows: dict[str, Any] = {}
        for loader in LOADERS:
            if not available(loader):
                rows[loader] = {"loader": loader, "error": "not installed"}
                continue
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "benchmarks.recording_load", loader, path],
                    capture_output=True, text=True, timeout=timeout, env=env, cwd=root,
                )
            except subprocess.TimeoutExpired:
                rows[loader] = {"loader": loader, "error": f"killed after {timeout:g} s"}
                continue
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                tail = done.stderr.strip().splitlines()[-1:] or ["no result"]
                rows[loader] = {"loader": loader, "error": tail[0]}
                continue
            rows[loader] = json.loads(lines[-1])
            rows[loader]["error"] = None
    typed = rows.get("rxlens-typed", {})
    columnar = rows.get("rxlens-columnar", {})
    ratios: dict[str, Any] = {}
    if not typed.get("error") and not columnar.get("error"):
        ratios = {
            "speedup_vs_typed": round(columnar["events_per_s"] / typed["events_per_s"], 2),
            "cpu_speedup_vs_typed": round(
                columnar["events_per_cpu_s"] / typed["events_per_cpu_s"], 2
            ),
            "peak_growth_vs_typed": round(
                columnar["peak_growth_mb"] / typed["peak_growth_mb"], 2
            ),
        }
    return {"n": n, "file_mb": round(size / MB, 1), "loaders": rows, **ratios}


def markdown(result: dict[str, Any]) -> str:
    """The measure as a Markdown table."""
    lines = [
        f"### Recording load ({result['n']:,} events, {result['file_mb']} MB of JSONL)",
        "",
        "| loader | events/s | seconds | events/CPU-s | peak RSS (MB) | peak growth (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for loader, row in result["loaders"].items():
        if row.get("error"):
            lines.append(f"| {loader} | {row['error']} | | | | |")
            continue
        lines.append(
            f"| {loader} | {row['events_per_s']:,} | {row['seconds']} "
            f"| {row['events_per_cpu_s']:,} | {row['peak_rss_mb']} | {row['peak_growth_mb']} |"
        )
    if "speedup_vs_typed" in result:
        lines += [
            "",
            f"rxlens columnar vs typed: {result['speedup_vs_typed']}x the events/s "
            f"({result['cpu_speedup_vs_typed']}x per CPU second), "
            f"{result['peak_growth_vs_typed']}x the peak growth.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in _RUN:
        print(json.dumps(child(sys.argv[1], sys.argv[2])), flush=True)
    elif len(sys.argv) == 2:
        print(markdown(run({"n": int(sys.argv[1])})))
    else:
        print("usage: python -m benchmarks.recording_load LOADER PATH | N", file=sys.stderr)
        sys.exit(2)
