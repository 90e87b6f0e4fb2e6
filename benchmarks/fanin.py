"""Fan-in: many sessions in one process, each sent one result per second.

All sessions are opened (rxlens: one ``LensClient``, one ``client.events`` pipeline per
session; the vendor SDK: one ``create_sse_consumer`` per session, polled by one thread with the
non-blocking ``read()``). Once every session has delivered a result, a window of ``window``
seconds is measured: the process's CPU time (every thread) over the window, OS threads, RSS,
and the delivery lag (server write to subscriber) of the results that arrived in it. The
process holds the load when it delivered at least 95% of what the server sent in the window
and the p99 lag stayed under one second.

Each session's results carry consecutive numbers, so the run also counts, over the whole run,
results delivered twice (``duplicates``) and numbers skipped between the first and the last
result a session delivered (``gaps``): exactly once is both at zero. The open-files limit is
raised to the hard limit first (a session is a socket); ``nofile`` reports it and ``note``
says when it is below what the level needs.

Once every session is open, the process freezes its heap (``gc.freeze()``): the sessions'
objects live as long as the sessions, and a long-running fan-in service keeps them out of the
collector's way. Measured without it (2 cores shared with other work): full collections over
1,000 sessions' objects stalled delivery 0.2-0.7 s, over 3,000 sessions' 1-2 s, which is all
of the p99 lag there. ``gc_max_pause_ms`` reports the longest collection in the window.

The streams come from the benchmark server's lean asyncio fan-in port
(:class:`benchmarks.server._LeanFanin`), not the emulator nor its thread-per-connection
server, which could not open 10,000 sessions (see there).
"""

from __future__ import annotations

import gc
import queue
import resource
import threading
import time
from typing import Any

from benchmarks.common import cpu_seconds, ms, os_threads, percentile, rss_bytes
from benchmarks.contenders import VENDOR_POLL, Contender, Handle, Sink
from benchmarks.control import Server
from benchmarks.frames import RESULT

MB = 1e6


def run(contender: Contender, server: Server, params: dict[str, Any]) -> dict[str, Any]:
    count = int(params["sessions"])
    window = float(params.get("window", 10))
    nofile, note = raise_nofile(count + 256)
    created = server.create("fanin", sessions=count, interval=1.0)
    scenario, sids = created["session_id"], created["session_ids"]
    # The streams come from the server's lean fan-in port (see benchmarks.server._LeanFanin).
    ctx = contender.setup(Server(int(created["stream_port"]), server.host))
    sinks = [Sink(stamps=True) for _ in sids]
    threads_before = os_threads()
    t_open = time.monotonic()
    handles: list[Handle] = []
    polled = contender.key == "vendor-sdk"
    for sid, sink in zip(sids, sinks, strict=True):
        if polled:
            handles.append(VENDOR_POLL(ctx, sid, sink, {}))
        else:
            handles.append(contender.start(ctx, sid, sink, {}))
    stop = threading.Event()
    if polled:
        threading.Thread(target=_poll, args=(handles, sinks, stop), daemon=True).start()
    deadline = time.monotonic() + 30 + count / 20
    while time.monotonic() < deadline and not all(s.stamps or s.done.is_set() for s in sinks):
        time.sleep(0.05)
    ready = sum(1 for s in sinks if s.stamps)
    open_s = time.monotonic() - t_open
    # The sessions' objects are there for as long as they run: out of the collector's way, as
    # a long-running service would put them (see the module docstring).
    gc.freeze()
    pauses = _GCPauses()
    sent0 = server.stats(scenario)["sent"]
    cpu0, t0 = cpu_seconds(), time.monotonic_ns()
    time.sleep(window)
    cpu1, t1 = cpu_seconds(), time.monotonic_ns()
    pauses.stop()
    sent1 = server.stats(scenario)["sent"]
    threads, rss = os_threads(), rss_bytes()
    lags = [
        arrived - stamp
        for sink in sinks
        for arrived, stamp, _ in list(sink.stamps)
        if t0 <= arrived < t1
    ]
    # Results written in the window and not yet delivered count against the process.
    delivered = len(lags)
    sent = sent1 - sent0
    p99 = percentile(lags, 99)
    failed = sum(1 for s in sinks if s.error is not None)
    duplicates = gaps = 0
    for sink in sinks:
        seqs = [seq for _, _, seq in list(sink.stamps)]
        distinct = set(seqs)
        duplicates += len(seqs) - len(distinct)
        if distinct:
            gaps += max(distinct) - min(distinct) + 1 - len(distinct)
    stop.set()
    for handle in handles:
        if not polled:
            handle.close()
    server.stop(scenario)
    return {
        "sessions": count,
        "ready": ready,
        "open_s": round(open_s, 2),
        "window_s": window,
        "cpu_percent": round((cpu1 - cpu0) / ((t1 - t0) / 1e9) * 100, 1),
        "threads": threads,
        "threads_before": threads_before,
        "rss_mb": round(rss / MB, 1),
        "sent": sent,
        "delivered": delivered,
        "lag_p50_ms": ms(percentile(lags, 50)),
        "lag_p99_ms": ms(p99),
        "failed_sessions": failed,
        "duplicates": duplicates,
        "gaps": gaps,
        "nofile": nofile,
        "gc_frozen": True,
        "gc_max_pause_ms": round(pauses.longest * 1e3, 1),
        **({"note": note} if note else {}),
        "held": ready == count
        and failed == 0
        and sent > 0
        and delivered >= 0.95 * sent
        and p99 is not None
        and p99 < 1e9,
    }


class _GCPauses:
    """The longest garbage collection while it is installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)


def raise_nofile(needed: int) -> tuple[int, str]:
    """Raise the soft open-files limit to the hard one; returns it and a note if too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = needed if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
        except (ValueError, OSError):
            pass  # reported below through the limit in force
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        return soft, f"open-files limit {soft} is below the {needed} this level needs"
    return soft, ""


def _poll(handles: list[Handle], sinks: list[Sink], stop: threading.Event) -> None:
    """The vendor SDK's consumer side: one thread polling every reader's ``read()``."""
    pairs = [(h.extra["reader"], s) for h, s in zip(handles, sinks, strict=True)]
    while not stop.is_set():
        for reader, sink in pairs:
            # read() yields at most one event, and raises queue.Empty once it has drained
            # the queue (its emptiness test is inverted): a caller has to catch it.
            try:
                for payload in reader.read():
                    if payload["type"] == RESULT:
                        sink.item(payload)
            except queue.Empty:
                pass
        time.sleep(0.01)
