"""Mailbox beside SSE on the emulator: throughput of a drained backlog and push-to-delivery
latency, for the same typed events.

The two channels differ in kind: SSE is pushed by the server, the mailbox is polled, so its
latency depends on :class:`rxlens.mailbox.PollPolicy` (a reader that found the mailbox empty
waits ``min_interval`` and more before asking again). This measures both on loopback::

    python -m benchmarks.mailbox [--events 20000] [--latency-events 200] [--period 0.02]

It is not part of ``python -m benchmarks`` (whose contenders are SSE clients).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

from reactivex import Observable

from rxlens import LensClient
from rxlens.emulator import LensEmulator
from rxlens.events import InferenceResult, LensEvent
from rxlens.mailbox import PollPolicy
from rxlens.operators import only_results


def _result(i: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"r{i}"], "n": i}}


def _drain(events: Observable[LensEvent], n: int, timeout: float) -> float:
    """Seconds until ``n`` results arrived."""
    count = 0
    done = threading.Event()

    def on_next(_: InferenceResult) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    started = time.perf_counter()
    subscription = events.pipe(only_results()).subscribe(on_next, lambda e: done.set())
    finished = done.wait(timeout)
    took = time.perf_counter() - started
    subscription.dispose()
    if not finished or count < n:
        raise RuntimeError(f"only {count} of {n} results in {timeout} s")
    return took


def throughput(channel: str, n: int, poll: PollPolicy) -> float:
    with (
        LensEmulator(log_size=n + 10, replay="all", heartbeat_interval=5.0) as emu,
        LensClient(api_key=emu.api_key, base_url=emu.base_url) as client,
    ):
        sid = emu.create_session("manual", channel="mailbox" if channel == "mailbox" else "sse")
        emu.push_many(sid, [_result(i) for i in range(n)])
        events = client.events(sid, channel=channel, poll=poll)  # type: ignore[arg-type]
        return n / _drain(events, n, timeout=300)


def latency(channel: str, n: int, period: float, poll: PollPolicy) -> dict[str, float]:
    delays: list[float] = []
    sent: dict[int, float] = {}
    done = threading.Event()
    with (
        LensEmulator(replay="all", heartbeat_interval=5.0) as emu,
        LensClient(api_key=emu.api_key, base_url=emu.base_url) as client,
    ):
        sid = emu.create_session("manual", channel="mailbox" if channel == "mailbox" else "sse")
        events = client.events(sid, channel=channel, poll=poll)  # type: ignore[arg-type]

        def on_next(event: InferenceResult) -> None:
            number = json.loads(event.raw)["event_data"]["n"] if event.raw else -1
            if number in sent:
                delays.append(time.perf_counter() - sent[number])
            if len(delays) >= n:
                done.set()

        subscription = events.pipe(only_results()).subscribe(on_next)
        time.sleep(0.5)  # connected
        for i in range(n):
            sent[i] = time.perf_counter()
            emu.push(sid, _result(i))
            time.sleep(period)
        done.wait(30)
        subscription.dispose()
    delays.sort()
    return {
        "n": len(delays),
        "median_ms": round(1000 * statistics.median(delays), 2),
        "p95_ms": round(1000 * delays[int(0.95 * (len(delays) - 1))], 2),
        "max_ms": round(1000 * delays[-1], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mailbox", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--latency-events", type=int, default=200)
    parser.add_argument("--period", type=float, default=0.02)
    args = parser.parse_args(argv)
    poll = PollPolicy()
    rows: dict[str, Any] = {}
    for channel in ("sse", "mailbox"):
        rows[channel] = {
            "throughput_events_per_s": round(throughput(channel, args.events, poll)),
            "latency": latency(channel, args.latency_events, args.period, poll),
        }
    print(json.dumps({"events": args.events, "period_s": args.period, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
