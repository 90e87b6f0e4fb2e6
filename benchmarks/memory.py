"""Memory: RSS growth while ``n`` results stream through, at full speed, in a fresh process.

The baseline is taken once the first ``warm`` results are in (imports, the connection, the
first buffers and caches are then paid for); the growth is the RSS at the end minus that
baseline, and the peak growth is the highest RSS sampled (every 20 ms) minus it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.common import describe, rss_bytes
from benchmarks.contenders import Contender, Sink
from benchmarks.control import Server

MB = 1e6


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    n = int(params["n"])
    warm = int(params.get("warm", max(1, n // 20)))
    timeout = float(params.get("timeout", 300))
    sid = server.create("bulk", n=n)["session_id"]
    ctx = contender.setup(server)
    sink = Sink()
    samples: dict[str, int] = {"peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = rss_bytes()
            if "base" not in samples and sink.count >= warm:
                samples["base"] = rss
            if "base" in samples:
                samples["peak"] = max(samples["peak"], rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    handle = contender.start(ctx, sid, sink, {})
    finished = sink.done.wait(timeout)
    end_rss = rss_bytes()
    stop.set()
    sampler.join()
    handle.close()
    base = samples.get("base")
    return {
        "events": sink.count,
        "expected": n,
        "base_mb": round(base / MB, 1) if base else None,
        "growth_mb": round((end_rss - base) / MB, 1) if base else None,
        "peak_growth_mb": round((max(samples["peak"], end_rss) - base) / MB, 1) if base else None,
        "error": describe(sink.error) or (None if finished else f"timeout after {timeout:g} s"),
    }
