"""Resume: a live stream of ``n`` results produced at ``rate`` per second, with the connection
cut mid-frame after every ``drop_every`` results. The server resumes after ``Last-Event-ID``;
a client that sends none gets only what is produced after it comes back (a live stream).

rxlens runs with ``RetryPolicy.immediate()``: the default policy's growing back-off (1 s,
2 s, 4 s ... between drops less than a minute apart) is a choice for real servers, not a cost
of the library. The vendor SDK runs with its own fixed policy. Losses and duplicates are
counted from the results' ``seq``; the reconnect gap is, on the server, the time from a cut to
the next request.
"""

from __future__ import annotations

import itertools
from typing import Any

from benchmarks.common import describe, median, ms
from benchmarks.contenders import Contender, Sink
from benchmarks.control import Server
from benchmarks.frames import seq_of


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    n = int(params["n"])
    rate = float(params.get("rate", 10_000))
    drop_every = int(params.get("drop_every", 1000))
    timeout = float(params.get("timeout", 60))
    if not contender.resumes:
        return {"skipped": "no built-in reconnection"}
    from rxlens import RetryPolicy

    sid = server.create("resume", n=n, rate=rate, drop_every=drop_every)["session_id"]
    ctx = contender.setup(server)
    sink = Sink(keep=True)
    handle = contender.start(ctx, sid, sink, {"policy": RetryPolicy.immediate()})
    finished = sink.done.wait(timeout)
    handle.close()
    seqs = [seq_of(payload) for _, payload in list(sink.records)]
    unique = set(seqs)
    connections = server.stats(sid)["connections"]
    gaps = [
        after["at"] - before["dropped"]
        for before, after in itertools.pairwise(connections)
        if before.get("dropped")
    ]
    drops = sum(1 for c in connections if c.get("dropped"))
    return {
        "expected": n,
        "received": len(seqs),
        "lost": n - len(unique),
        "duplicated": len(seqs) - len(unique),
        "drops": drops,
        "reconnects": len(connections) - 1,
        "with_cursor": sum(1 for c in connections[1:] if c.get("last_event_id")),
        "gap_p50_ms": ms(median(gaps)),
        "gap_max_ms": ms(max(gaps)) if gaps else None,
        "error": describe(sink.error) or (None if finished else f"timeout after {timeout:g} s"),
    }
