"""Large events: how long one 2 MiB and one 8 MiB event take from the server's write to the
subscriber (each event alone on the wire, a pause before and after it)."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import describe, median, ms
from benchmarks.contenders import Contender, Sink
from benchmarks.control import Server
from benchmarks.frames import seq_of, stamp_of

MIB = 2**20


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    sizes = [int(s) for s in params.get("sizes", [2 * MIB, 8 * MIB])]
    repeats = int(params.get("repeats", 1))
    timeout = float(params.get("timeout", 30))
    order = sizes * repeats
    sid = server.create("large", sizes=order, gap=0.2)["session_id"]
    ctx = contender.setup(server)
    sink = Sink(keep=True)
    handle = contender.start(ctx, sid, sink, {})
    deadline = time.monotonic() + timeout + 0.4 * len(order)
    finished = sink.done.wait(max(0.0, deadline - time.monotonic()))
    handle.close()
    got: dict[int, list[int]] = {size: [] for size in sizes}
    for arrived, payload in list(sink.records):
        got[order[seq_of(payload) - 1]].append(arrived - stamp_of(payload))
    # A reader failing after it was closed on a timeout is reported as the timeout.
    error = describe(sink.error) if finished else f"timeout after {timeout:g} s"
    result: dict[str, Any] = {"error": error}
    for size in sizes:
        result[f"{size // MIB}MiB_ms"] = ms(median(got[size]))
        result[f"{size // MIB}MiB_runs"] = len(got[size])
    return result
