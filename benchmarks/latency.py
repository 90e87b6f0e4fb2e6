"""Latency: from the server's write of a frame to the subscriber's hands, at 100 events/s.

The server stamps each frame with ``time.monotonic_ns()`` just before its ``sendall``; the
subscriber notes ``monotonic_ns()`` on arrival (one clock for every process of the machine).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import describe, ms, percentile
from benchmarks.contenders import Contender, Sink
from benchmarks.control import Server
from benchmarks.frames import stamp_of


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    n, rate = int(params["n"]), float(params.get("rate", 100))
    sid = server.create("paced", n=n, rate=rate)["session_id"]
    ctx = contender.setup(server)
    sink = Sink(keep=True)
    handle = contender.start(ctx, sid, sink, {})
    finished = sink.done.wait(n / rate + 10)
    handle.close()
    lags = [arrived - stamp_of(payload) for arrived, payload in list(sink.records)]
    return {
        "events": len(lags),
        "expected": n,
        "rate": rate,
        "p50_ms": ms(percentile(lags, 50)),
        "p99_ms": ms(percentile(lags, 99)),
        "max_ms": ms(max(lags)) if lags else None,
        "error": describe(sink.error) or (None if finished else "timeout"),
    }
