"""Dispose latency while the server is silent.

The server sends the start frame and then nothing for ``hold`` seconds. Once the client is
connected, the harness stops it the way its users would (dispose, ``close()``) and measures
two things: when that call returned, and when the server saw the connection go away. The later
of the two is the dispose latency: a ``close()`` that returns at once but leaves the socket open
(and its thread blocked) has not disposed anything yet.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import call_with_timeout, ms
from benchmarks.contenders import Contender, Sink
from benchmarks.control import Server


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    hold = float(params.get("hold", 15.0))
    sid = server.create("silent", hold=hold)["session_id"]
    ctx = contender.setup(server)
    sink = Sink()
    handle = contender.start(ctx, sid, sink, {})
    deadline = time.monotonic() + 10
    while not server.stats(sid)["connections"] and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the start frame is in: the client now waits on a silent socket
    returned: list[int] = []
    t0 = time.monotonic_ns()

    def close() -> None:
        handle.close()
        returned.append(time.monotonic_ns())

    call_with_timeout(close, hold + 5)
    closed: int | None = None
    while time.monotonic_ns() - t0 < (hold + 2) * 1e9:
        connections = server.stats(sid)["connections"]
        closed = connections[0].get("closed") if connections else None
        if closed is not None:
            break
        time.sleep(0.005)
    close_ns = returned[0] - t0 if returned else None
    hangup_ns = closed - t0 if closed is not None else None
    total = None if close_ns is None or hangup_ns is None else max(close_ns, hangup_ns)
    return {
        "ms": ms(total),
        "close_returned_ms": ms(close_ns),
        "connection_closed_ms": ms(hangup_ns),
        "hold_s": hold,
        # Not closed by the client before the server gave up on it.
        "error": None if total is not None else f"not disposed within the {hold:g} s hold",
    }
