"""Soak run: a chaotic Lens stream for a long time, watching the client's resources.

    python scripts/soak.py --minutes 30 [--rate 1000] [--seed N]

The Lens emulator runs in a child process, so that what is measured is the client alone. It
plays an endless session at ``--rate`` events per second, and every ``--phase-seconds`` it
switches to a new random set of faults (drops mid-frame, stalls, bursts of 5xx and of 429,
malformed frames, CRLF, ``retry:`` values, big events, slow drip, close-delimited bodies),
drawn from ``--seed``. The server always sends ids here, so every gap or repeat is a fault
of the client.

This process reads the stream with the canonical pipeline (``LensClient.events``: connect,
heartbeat timeout, resume, until end) and, every ``--sample-seconds`` (60), prints a row:
events so far, the rate, reconnects, malformed frames, events the server announced it skipped
(its log, two minutes long, wrapped past a reader slowed down by a fault), events lost and
repeated by the client, and its own resident memory (RSS), threads and open file descriptors.

At the end it checks each resource for steady growth: after a warm-up, a least-squares line
through the samples must not climb by more than a tolerance over the run (RSS 16 MiB, threads
2, file descriptors 4) while most steps go up. It exits 0 when nothing grew and the stream kept
its promises, 1 when a resource grew steadily or events were lost or repeated, 2 when the
stream failed. Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

#: Growth over the whole run that counts as a leak, per resource.
TOLERANCE = {"rss_mib": 16.0, "threads": 2.0, "fds": 4.0}


# --- the server side (child process) ----------------------------------------------------------


def draw_faults(rng: random.Random) -> Any:
    """A random handful of fault modes, ids always on."""
    from rxlens.emulator import Faults

    kw: dict[str, Any] = {}
    # Faults are fixed per connection: every phase drops its connections sooner or later, so
    # that the next phase takes over.
    if rng.random() < 0.7:
        kw["drop_rate"] = rng.uniform(0.0002, 0.002)
    else:
        kw["drop_after"] = rng.randint(200, 20000)
    if rng.random() < 0.2:
        kw.update(stall_after=rng.randint(0, 2000), stalls=1)
        kw["stall_for"] = rng.choice([None, rng.uniform(0.1, 1.0)])
    if rng.random() < 0.2:
        kw["fail_next"] = rng.randint(1, 5)
        kw["fail_status"] = rng.choice([429, 500, 502, 503, 504])
        kw["retry_after"] = rng.choice([0, 1])
    if rng.random() < 0.3:
        kw["malformed"] = rng.choice(["not-json", "no-type", "bytes-wrapper"])
        kw["malformed_every"] = rng.randint(20, 500)
    kw["crlf"] = rng.random() < 0.3
    if rng.random() < 0.5:
        kw["retry_ms"] = rng.choice([1, 50, 1000, 30000])
    if rng.random() < 0.05:
        # One byte per write cannot keep up with the rate: cut such a connection soon.
        kw.update(slow_drip=True, drop_after=rng.randint(20, 100), drop_rate=0.0)
    elif rng.random() < 0.2:
        kw["large_event_after"] = rng.randint(0, 5000)
    if rng.random() < 0.1:
        kw["close_delimited"] = True
    return Faults(**kw)


def payloads() -> Iterator[dict[str, Any]]:
    n = 0
    while True:
        yield {
            "type": "inference.result",
            "event_data": {
                "response": ["HEALTHY" if n % 7 else "BROKEN", {"HEALTHY": 3, "BROKEN": n % 5}],
                "query_id": f"q-{n}",
                "query_metadata": {"query_metadata": {"read_index": n * 100, "window_size": 100}},
            },
        }
        n += 1


def offsets(rate: float) -> Iterator[float]:
    n = 0
    while True:
        yield n / rate
        n += 1


def serve(conn: Connection, rate: float, seed: int, phase_seconds: float) -> None:
    """Child process: run the emulator, change faults every phase, until told to stop."""
    from rxlens.emulator import LensEmulator

    rng = random.Random(seed)
    # The log holds two minutes of events, so a reader slowed down by a slow-drip phase can
    # still resume from it; what falls out of it anyway is announced (and counted apart).
    log_size = int(max(10_000, rate * 120))
    with LensEmulator(
        heartbeat_interval=0.5, idle_timeout=3600, seed=seed, log_size=log_size
    ) as emu:
        sid = emu.create_session("manual", faults=draw_faults(rng))
        emu.play(sid, payloads(), offsets=offsets(rate), speed=1.0)
        conn.send((emu.base_url, emu.api_key, sid))
        phases = 0
        while not conn.poll(phase_seconds):
            emu.set_faults(draw_faults(rng), session_id=sid)
            phases += 1
        conn.recv()
        conn.send(phases)


# --- the client side ---------------------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Tally:
    """What the stream delivered so far (updated on the reader thread, under a lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    events: int = 0
    results: int = 0
    malformed: int = 0
    big: int = 0
    #: Events the server said it no longer had (its log wrapped past a slow reader).
    server_gap: int = 0
    lost: int = 0
    repeated: int = 0
    reconnects: int = 0
    last_id: int = 0
    error: BaseException | None = None

    def on_event(self, event: Any) -> None:
        from rxlens.events import InferenceResult, LogEvent, MalformedEvent

        with self.lock:
            self.events += 1
            data = event.event_data if isinstance(event, LogEvent) else None
            if isinstance(data, dict) and isinstance(data.get("resume_after_id"), int):
                # The emulator's notice that it skips events it no longer holds: a loss of
                # the server's (a finite buffer), not of the client.
                skipped_to = data["resume_after_id"]
                if skipped_to > self.last_id:
                    self.server_gap += skipped_to - self.last_id
                    self.last_id = skipped_to
            if isinstance(event, MalformedEvent):
                self.malformed += 1
            elif isinstance(event, InferenceResult):
                if event.id is None:
                    self.big += 1  # the emulator's big event has no id
                else:
                    self.results += 1
            if event.id is not None:
                current = int(event.id)
                if self.last_id and current > self.last_id + 1:
                    self.lost += current - self.last_id - 1
                elif current <= self.last_id:
                    self.repeated += 1
                self.last_id = max(self.last_id, current)

    def on_state(self, state: Any) -> None:
        if state.kind == "backing_off":
            with self.lock:
                self.reconnects += 1


@dataclass
class Sample:
    minute: float
    events: int
    rate: float
    reconnects: int
    malformed: int
    server_gap: int
    lost: int
    repeated: int
    rss_mib: float
    threads: int
    fds: int


def steady_growth(values: list[float], tolerance: float) -> tuple[bool, float]:
    """(grew, growth over the run): the least-squares slope over the samples, times their span.

    Growth counts when it passes ``tolerance`` and most steps go up (a one-off jump, such as
    the first big event allocating its buffers, is not a leak).
    """
    n = len(values)
    if n < 3:
        return False, 0.0
    xs = range(n)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)) / var
    growth = slope * (n - 1)
    ups = sum(b > a for a, b in itertools.pairwise(values))
    return growth > tolerance and ups >= 0.6 * (n - 1), growth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="fault schedule (default random)")
    parser.add_argument("--sample-seconds", type=float, default=60.0, help="default 60")
    parser.add_argument("--phase-seconds", type=float, default=10.0, help="default 10")
    parser.add_argument(
        "--warmup", type=int, default=2, help="samples left out of the growth check (default 2)"
    )
    args = parser.parse_args(argv)
    if not os.path.isdir("/proc/self/fd"):
        print("soak: needs Linux (/proc)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"soak: {args.minutes:g} min at {args.rate:g} events/s, seed {seed}", flush=True)

    from rxlens import LensClient, RetryPolicy

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(
        target=serve, args=(child, args.rate, seed, args.phase_seconds), daemon=True
    )
    server.start()
    if not parent.poll(60):
        print("soak: the emulator did not start", file=sys.stderr)
        return 2
    base_url, api_key, sid = parent.recv()

    tally = Tally()
    done = threading.Event()

    def on_error(error: Exception) -> None:
        tally.error = error
        done.set()

    client = LensClient(api_key=api_key, base_url=base_url)
    pipeline = client.events(
        sid,
        heartbeat_timeout=3.0,
        policy=RetryPolicy(base=0.05, cap=1.0, seed=seed),
        on_state=tally.on_state,
        check_channel=False,
    )
    started = time.monotonic()
    subscription = pipeline.subscribe(tally.on_event, on_error, done.set)
    samples: list[Sample] = []
    header = (
        f"{'min':>5} {'events':>10} {'ev/s':>7} {'reconn':>6} {'malf':>6} {'gap':>6} {'lost':>5} "
        f"{'dup':>5} {'RSS MiB':>8} {'threads':>7} {'fds':>4}"
    )
    print(header, flush=True)

    def sample() -> None:
        with tally.lock:
            events, reconnects = tally.events, tally.reconnects
            malformed, lost, repeated = tally.malformed, tally.lost, tally.repeated
            server_gap = tally.server_gap
        elapsed = time.monotonic() - started
        previous = samples[-1] if samples else None
        span = elapsed / 60 - (previous.minute if previous else 0.0)
        rate = (events - (previous.events if previous else 0)) / max(span * 60, 1e-9)
        row = Sample(
            elapsed / 60, events, rate, reconnects, malformed, server_gap, lost, repeated,
            rss_mib(), threading.active_count(), open_fds(),
        )
        samples.append(row)
        print(
            f"{row.minute:5.1f} {row.events:10d} {row.rate:7.0f} {row.reconnects:6d} "
            f"{row.malformed:6d} {row.server_gap:6d} {row.lost:5d} {row.repeated:5d} "
            f"{row.rss_mib:8.1f} "
            f"{row.threads:7d} {row.fds:4d}",
            flush=True,
        )

    sample()  # the start
    deadline = started + args.minutes * 60
    try:
        while not done.is_set():
            next_at = started + len(samples) * args.sample_seconds
            if done.wait(max(0.0, min(next_at, deadline) - time.monotonic())):
                break
            if time.monotonic() >= deadline:
                sample()
                break
            sample()
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
    finally:
        subscription.dispose()
        client.close()
        parent.send("stop")
        phases = parent.recv() if parent.poll(15) else "?"
        server.join(15)

    print(
        f"soak: {tally.events} events ({tally.results} results, {tally.malformed} malformed, "
        f"{tally.big} big), {tally.reconnects} reconnects, {phases} fault phases, "
        f"skipped by the server {tally.server_gap}, lost {tally.lost}, repeated {tally.repeated}"
    )
    if tally.error is not None:
        print(f"soak: the stream failed: {type(tally.error).__name__}: {tally.error}")
        return 2
    verdict = 0
    checked = samples[args.warmup :]
    for name, tolerance in TOLERANCE.items():
        values = [float(getattr(s, name)) for s in checked]
        grew, growth = steady_growth(values, tolerance)
        first, last = getattr(samples[0], name), getattr(samples[-1], name)
        status = "GREW" if grew else "ok"
        print(f"soak: {name}: start {first:g}, end {last:g}, trend {growth:+.1f} ({status})")
        if grew:
            verdict = 1
    if tally.lost or tally.repeated:
        print("soak: events were lost or repeated although the server sent ids")
        verdict = 1
    print("soak: PASS" if verdict == 0 else "soak: FAIL", flush=True)
    return verdict


if __name__ == "__main__":
    sys.exit(main())
