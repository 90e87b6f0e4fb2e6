"""First event on a close-delimited response (no chunking, no length: the body ends when the
connection does). The server sends one event and then stays silent for ``hold`` seconds; a
client that waits to fill a buffer only sees the event when the server finally closes."""

from __future__ import annotations

from typing import Any

from benchmarks.common import describe, median, ms
from benchmarks.contenders import Contender, Sink
from benchmarks.control import Server
from benchmarks.frames import stamp_of


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    hold = float(params.get("hold", 2.0))
    repeats = int(params.get("repeats", 1))
    ctx = contender.setup(server)
    lags: list[int] = []
    errors: list[str] = []
    for _ in range(repeats):
        sid = server.create("first", delay=0.05, hold=hold)["session_id"]
        sink = Sink(keep=True)
        got_one = _first(sink, hold + 1.0, contender, ctx, sid)
        if got_one:
            arrived, payload = sink.records[0]
            lags.append(arrived - stamp_of(payload))
        else:
            errors.append(describe(sink.error) or f"nothing within {hold + 1:g} s")
    best = median(lags)
    return {
        "ms": ms(best),
        "runs": len(lags),
        "hold_s": hold,
        # Arriving around ``hold`` means the event waited for the server to close.
        "waited_for_close": best is not None and best >= hold * 1e9 * 0.9,
        "error": errors[0] if errors else None,
    }


def _first(sink: Sink, timeout: float, contender: Contender, ctx: Any, sid: str) -> bool:
    import time

    handle = contender.start(ctx, sid, sink, {})
    deadline = time.monotonic() + timeout
    while not sink.records and time.monotonic() < deadline:
        if sink.done.wait(0.001) and not sink.records:
            break
    handle.close()
    return bool(sink.records)
