"""Throughput: ``n`` results of about 165 bytes, sent as fast as the socket takes them.

The clock runs from starting the contender (connection set-up included, a millisecond here)
to the subscriber seeing ``sse.stream.end``.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import cpu_seconds, describe
from benchmarks.contenders import Contender, Sink
from benchmarks.control import Server


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    n = int(params["n"])
    timeout = float(params.get("timeout", 120))
    sid = server.create("bulk", n=n)["session_id"]
    ctx = contender.setup(server)
    sink = Sink()
    cpu0 = cpu_seconds()
    t0 = time.monotonic_ns()
    handle = contender.start(ctx, sid, sink, {})
    finished = sink.done.wait(timeout)
    cpu = cpu_seconds() - cpu0
    handle.close()
    end = sink.ended_ns if finished else time.monotonic_ns()
    seconds = (end - t0) / 1e9
    return {
        "events": sink.count,
        "expected": n,
        "complete": finished and sink.count == n and sink.error is None,
        "seconds": round(seconds, 4),
        "events_per_s": round(sink.count / seconds, 1) if seconds > 0 else None,
        "cpu_us_per_event": round(cpu / sink.count * 1e6, 2) if sink.count else None,
        "error": describe(sink.error) or (None if finished else f"timeout after {timeout:g} s"),
    }
