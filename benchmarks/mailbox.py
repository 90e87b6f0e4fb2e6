"""Mailbox beside SSE: throughput of a drained backlog and push-to-delivery latency, for the
same results, served by the rxlens emulator.

A Lens session writes to the SSE consumer or to the ``session.read`` mailbox, never both. The
two differ in kind: SSE is pushed by the server, the mailbox is polled, so the mailbox's latency
depends on the reader's polling (rxlens: :class:`rxlens.mailbox.PollPolicy`, which waits
``min_interval`` and more after an empty reply; the vendor SDK: its socket worker sleeps 0.1 s
whenever it has nothing to send). Readers:

- ``rxlens-sse``: ``client.events(sid, channel="sse")``, the same emulator's SSE consumer;
- ``rxlens-mailbox``: ``client.events(sid, channel="mailbox")`` with the default poll policy;
- ``rxlens-mailbox-fast``: the same with ``PollPolicy(min_interval=0.005, max_interval=0.05)``
  (more requests while idle, less latency);
- ``vendor-mailbox``: the vendor SDK's ``sessions.connect()`` then ``sessions.read()`` in a
  loop, each call bounded (it blocks forever when no reply comes, and breaks after a 30 s idle
  stretch: it sends ``session.heartbeat`` and never consumes the reply). A reader that cannot
  be measured within its bounds is reported "n/a" with the reason.

The emulator runs in a process of its own (``python -m benchmarks.mailbox serve``, driven over
its stdin/stdout); each reader runs in a fresh process (``python -m benchmarks.mailbox read``)
that the parent kills after its budget. Throughput: ``n`` results already in the log (SSE) or
mailbox, the clock from subscribing (connection set-up included) to the ``n``-th result.
Latency: results pushed at ``rate`` per second once the reader is connected, each stamped with
``time.monotonic_ns()`` at the push (one clock for every process of the machine); the lag is
arrival minus stamp. Every result carries its number: lost and duplicated are counted. The CPU
time per drained result of the reader's process and of the emulator's says which side limits
the throughput (throughput and latency run in a process each, so that the emulator's CPU time
around the drain is the drain's, and the warm-up's 200 results).

``python -m benchmarks.mailbox [--quick]`` runs it alone; ``python -m benchmarks`` runs it as
its ``mailbox`` measure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Literal

from benchmarks.common import call_with_timeout, cpu_seconds, describe, ms, percentile

ROOT = Path(__file__).resolve().parent.parent
READERS = ("rxlens-sse", "rxlens-mailbox", "rxlens-mailbox-fast", "vendor-mailbox")
LABELS = {
    "rxlens-sse": 'rxlens, SSE (channel="sse")',
    "rxlens-mailbox": 'rxlens, mailbox (channel="mailbox", default PollPolicy)',
    "rxlens-mailbox-fast": "rxlens, mailbox (PollPolicy(min_interval=0.005, max_interval=0.05))",
    "vendor-mailbox": "vendor SDK, mailbox (sessions.connect + sessions.read)",
}
SERVER = "rxlens emulator (LensEmulator, in a process of its own)"
#: Where the key travels to the reader processes (never on a command line).
KEY_ENV = "RXLENS_BENCH_MAILBOX_KEY"
#: Results of the warm-up stream, read untimed by every reader before its measures.
WARM_UP = 200

QUICK = {"n": 2_000, "latency_n": 50, "rate": 100.0, "timeout": 30.0}
FULL = {"n": 50_000, "latency_n": 1_000, "rate": 100.0, "timeout": 180.0}


def result(i: int, stamp: int | None = None) -> dict[str, Any]:
    """Result number ``i`` (about 120 bytes), stamped when paced."""
    data: dict[str, Any] = {"response": [f"result {i}"], "n": i}
    if stamp is not None:
        data["stamp_ns"] = stamp
    return {"type": "inference.result", "event_data": data}


# --- the server process ------------------------------------------------------------------------


def serve(inp: IO[str], out: IO[str]) -> None:
    """Run the emulator; answer one JSON line per command line until stdin closes.

    ``{"op": "bulk", "channel", "n"}``: a session with ``n`` results already output.
    ``{"op": "paced", "channel", "n", "rate"}``: a session that outputs ``n`` stamped results
    at ``rate`` per second, starting 0.2 s after its first reader connected (SSE) or first
    ``session.read`` (mailbox). Each answer: ``{"session_id", "endpoint"}``. ``{"op": "cpu"}``:
    ``{"cpu_s"}``, the process's CPU time so far.
    """
    from rxlens.emulator import LensEmulator

    size = int(os.environ.get("RXLENS_BENCH_MAILBOX_LOG", "100000"))
    with LensEmulator(log_size=size, replay="all", heartbeat_interval=5.0) as emu:
        out.write(json.dumps({"base_url": emu.base_url, "api_key": emu.api_key}) + "\n")
        out.flush()
        for line in inp:
            command = json.loads(line)
            if command["op"] == "cpu":
                # CPU seconds of the emulator (every thread) so far.
                out.write(json.dumps({"cpu_s": cpu_seconds()}) + "\n")
                out.flush()
                continue
            channel = command["channel"]
            sid = emu.create_session("manual", channel=channel)
            if command["op"] == "bulk":
                emu.push_many(sid, [result(i) for i in range(int(command["n"]))])
            else:
                args = (emu, sid, channel, int(command["n"]), float(command["rate"]))
                threading.Thread(target=_pace, args=args, daemon=True).start()
            reply = {"session_id": sid, "endpoint": emu.mailbox_endpoint(sid)}
            out.write(json.dumps(reply) + "\n")
            out.flush()


def _pace(emu: Any, sid: str, channel: str, n: int, rate: float) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = emu.session_stats(sid)
        if (stats.mailbox_reads if channel == "mailbox" else stats.readers_open) > 0:
            break
        time.sleep(0.01)
    time.sleep(0.2)
    start = time.monotonic()
    for i in range(n):
        # Paced against the start, so that a late wake-up does not slow the whole run.
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        emu.push(sid, result(i, time.monotonic_ns()))


# --- the reader processes ----------------------------------------------------------------------


class Tally:
    """Results seen by one reader: their numbers, and arrival/stamp pairs for the latency."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.numbers: list[int] = []
        self.lags: list[int] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.finished_ns = 0

    def add(self, event_data: Any, arrived_ns: int) -> None:
        if not isinstance(event_data, dict) or "n" not in event_data:
            return
        self.numbers.append(int(event_data["n"]))
        if "stamp_ns" in event_data:
            self.lags.append(arrived_ns - int(event_data["stamp_ns"]))
        if len(self.numbers) >= self.n and not self.done.is_set():
            self.finished_ns = arrived_ns
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()

    def counts(self) -> dict[str, int]:
        unique = set(self.numbers)
        return {
            "events": len(self.numbers),
            "expected": self.n,
            "lost": len(set(range(self.n)) - unique),
            "duplicated": len(self.numbers) - len(unique),
        }


def _rxlens_read(
    reader: str, base_url: str, key: str, target: dict[str, Any], tally: Tally, timeout: float
) -> None:
    from rxlens import LensClient
    from rxlens.mailbox import PollPolicy
    from rxlens.operators import only_results

    poll = PollPolicy(min_interval=0.005, max_interval=0.05) if reader.endswith("fast") else None
    channel: Literal["sse", "mailbox"] = "sse" if reader == "rxlens-sse" else "mailbox"
    pending: list[tuple[int, str]] = []

    def on_next(event: Any) -> None:
        pending.append((time.monotonic_ns(), event.raw))
        if len(pending) >= tally.n:
            _settle(pending, tally)

    with LensClient(api_key=key, base_url=base_url) as client:
        events = client.events(
            target["session_id"], channel=channel, poll=poll, check_channel=False
        )
        subscription = events.pipe(only_results()).subscribe(on_next, tally.fail)
        tally.done.wait(timeout)
        subscription.dispose()
    if not tally.done.is_set():
        _settle(pending, tally)


def _settle(pending: list[tuple[int, str]], tally: Tally) -> None:
    # The JSON is decoded after the clock stopped: the typed pipeline did its own decoding.
    arrivals = list(pending)
    pending.clear()
    for arrived, raw in arrivals:
        tally.add(json.loads(raw).get("event_data"), arrived)


def _vendor_read(
    base_url: str, key: str, target: dict[str, Any], tally: Tally, timeout: float
) -> str | None:
    """Drain with the vendor SDK; returns why it could not be measured (``None``: it was)."""
    import warnings

    import archetypeai

    client = archetypeai.ArchetypeAI(key, api_endpoint=base_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the SDK marks client.lens deprecated
        lens = client.lens
    sid = target["session_id"]
    if not lens.sessions.connect(sid, target["endpoint"]):
        return "sessions.connect() returned False"
    deadline = time.monotonic() + timeout
    bound = 10.0
    try:
        while not tally.done.is_set():
            if time.monotonic() > deadline:
                return f"not all results within {timeout:g} s"
            box: list[Any] = []

            def one_read(into: list[Any] = box) -> None:
                into.append(lens.sessions.read(sid))

            if not call_with_timeout(one_read, bound):
                return f"sessions.read() gave no reply within {bound:g} s"
            arrived = time.monotonic_ns()
            reply = box[0] if box else None
            if not isinstance(reply, dict) or reply.get("type") != "session.read.response":
                kind = reply.get("type") if isinstance(reply, dict) else type(reply).__name__
                return f"sessions.read() answered {kind!r}"
            body = reply.get("event_data")
            messages = body.get("messages") if isinstance(body, dict) else None
            for message in messages or []:
                tally.add(message.get("event_data"), arrived)
    finally:
        # close() joins the SDK's worker thread: bounded too.
        call_with_timeout(lens.sessions.close, 5.0)
    return None


def read(reader: str, base_url: str, plan: dict[str, Any]) -> None:
    """Run the plan's measures (``warm_up``, untimed, ``throughput``, ``latency``, those it
    names, in that order); print one JSON line per measure but the warm-up."""
    key = os.environ[KEY_ENV]
    timeout = float(plan["timeout"])
    for measure in [m for m in ("warm_up", "throughput", "latency") if m in plan]:
        target = plan[measure]
        tally = Tally(int(target["n"]))
        cpu0 = cpu_seconds()
        started = time.monotonic_ns()
        note: str | None = None
        try:
            if reader == "vendor-mailbox":
                note = _vendor_read(base_url, key, target, tally, timeout)
            else:
                _rxlens_read(reader, base_url, key, target, tally, timeout)
        except Exception as exc:
            tally.fail(exc)
        if measure == "warm_up":
            continue
        end = tally.finished_ns if tally.finished_ns else time.monotonic_ns()
        seconds = (end - started) / 1e9
        row: dict[str, Any] = {"measure": measure, "reader": reader, **tally.counts()}
        row["error"] = (
            describe(tally.error)
            or note
            or (None if tally.finished_ns else f"timeout after {timeout:g} s")
        )
        if measure == "throughput":
            cpu = cpu_seconds() - cpu0
            row["seconds"] = round(seconds, 3)
            count = len(tally.numbers)
            row["events_per_s"] = round(count / seconds, 1) if count and seconds > 0 else None
            row["reader_cpu_us_per_event"] = round(cpu / count * 1e6, 1) if count else None
        else:
            row["rate"] = target["rate"]
            row["p50_ms"] = ms(percentile(tally.lags, 50))
            row["p99_ms"] = ms(percentile(tally.lags, 99))
            row["max_ms"] = ms(max(tally.lags)) if tally.lags else None
        sys.stdout.write(json.dumps(row) + "\n")
        sys.stdout.flush()
    # A reader stuck in a blocking call (the vendor SDK's) must not keep this process alive.
    os._exit(0)


# --- the parent --------------------------------------------------------------------------------


class _Server:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.mailbox", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        hello = self._line()
        self.base_url, self.api_key = hello["base_url"], hello["api_key"]

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the mailbox benchmark's emulator process ended")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Every reader's throughput and latency; ``params``: ``n``, ``latency_n``, ``rate``,
    ``timeout`` (per measure), optionally ``readers``."""
    n, latency_n = int(params["n"]), int(params["latency_n"])
    rate, timeout = float(params["rate"]), float(params["timeout"])
    readers = list(params.get("readers", READERS))
    rows: dict[str, Any] = {}
    started = time.monotonic()
    head = {"n": n, "latency_n": latency_n, "rate": rate, "server": SERVER}
    try:
        server = _Server()
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        return {**head, "error": f"the emulator process did not start: {describe(exc)}"}
    try:
        for reader in readers:
            channel = "sse" if reader == "rxlens-sse" else "mailbox"
            # Throughput and latency in a process each, so that the emulator's CPU time
            # around the first is the drain's (and the warm-up's 200 results).
            plan = {
                "timeout": timeout,
                "warm_up": {**server.ask(op="bulk", channel=channel, n=WARM_UP), "n": WARM_UP},
                "throughput": {**server.ask(op="bulk", channel=channel, n=n), "n": n},
            }
            cpu0 = server.ask(op="cpu")["cpu_s"]
            found = _read_child(reader, server, plan, 2 * timeout + 30)
            throughput = found.get("throughput", {"error": found["note"]})
            if throughput.get("events"):
                cpu = server.ask(op="cpu")["cpu_s"] - cpu0
                throughput["server_cpu_us_per_event"] = round(cpu / throughput["events"] * 1e6, 1)
            paced = server.ask(op="paced", channel=channel, n=latency_n, rate=rate)
            plan = {"timeout": timeout, "latency": {**paced, "n": latency_n, "rate": rate}}
            found = _read_child(reader, server, plan, timeout + latency_n / rate + 30)
            latency = found.get("latency", {"error": found["note"]})
            rows[reader] = {"label": LABELS[reader], "throughput": throughput, "latency": latency}
    finally:
        server.close()
    return {**head, "seconds": round(time.monotonic() - started, 1), "readers": rows}


def _read_child(
    reader: str, server: _Server, plan: dict[str, Any], budget: float
) -> dict[str, Any]:
    env = dict(os.environ, **{KEY_ENV: server.api_key})
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    args = [
        sys.executable,
        "-m",
        "benchmarks.mailbox",
        "read",
        reader,
        server.base_url,
        json.dumps(plan),
    ]
    note = None
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=budget, env=env, cwd=ROOT
        )
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        note = f"killed after {budget:g} s"
    found: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            found[row["measure"]] = row
    tail = err.strip().splitlines()[-1:]
    found["note"] = note or " ".join(tail) or "no result"
    return found


def _cell(row: dict[str, Any], field: str, digits: int = 1) -> str:
    value = row.get(field)
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def markdown(result: dict[str, Any], sse: dict[str, Any] | None = None) -> str:
    """The measure as a Markdown table, readers in rows; ``sse``: the main run's results of
    rxlens typed over SSE from the lean benchmark server, quoted under it for reference."""
    lines = [
        f"### Mailbox beside SSE ({result['n']:,} results drained; latency at "
        f"{result['rate']:g} results/s over {result['latency_n']:,})",
        "",
        f"Both channels served by the {result['server']}, so that they are compared on one "
        "server; the mailbox is polled, so its latency is the reader's polling. CPU per "
        "drained result, of the reader's process and of the emulator's, says which side limits.",
        "",
    ]
    if result.get("error"):
        return "\n".join([*lines, f"Not measured: {result['error']}"]) + "\n"
    lines += [
        "| reader | events/s | CPU us/event: reader / emulator | latency p50 / p99 ms "
        "| lost / duplicated | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in result["readers"].values():
        tp, lat = row["throughput"], row["latency"]
        if tp.get("events_per_s") is None and lat.get("p50_ms") is None:
            reason = tp.get("error") or lat.get("error") or "no result"
            lines.append(f"| {row['label']} | n/a | n/a | n/a | n/a | n/a: {reason} |")
            continue
        counts = [tp, lat]
        lost = sum(int(r.get("lost", 0)) for r in counts)
        dup = sum(int(r.get("duplicated", 0)) for r in counts)
        named = (("throughput", tp), ("latency", lat))
        notes = "; ".join(f"{m}: {r['error']}" for m, r in named if r.get("error"))
        lines.append(
            f"| {row['label']} | {_cell(tp, 'events_per_s', 0)} "
            f"| {_cell(tp, 'reader_cpu_us_per_event')} / {_cell(tp, 'server_cpu_us_per_event')} "
            f"| {_cell(lat, 'p50_ms', 2)} / {_cell(lat, 'p99_ms', 2)} "
            f"| {lost:,} / {dup:,} | {notes} |"
        )
    if sse:
        tp, lat = sse.get("throughput") or {}, sse.get("latency") or {}
        lines += [
            "",
            "For reference, rxlens typed over SSE from the lean benchmark server in this run: "
            f"{_cell(tp, 'events_per_s', 0)} events/s, latency p50 / p99 "
            f"{_cell(lat, 'p50_ms', 2)} / {_cell(lat, 'p99_ms', 2)} ms.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve(sys.stdin, sys.stdout)
        return 0
    if argv[:1] == ["read"]:
        read(argv[1], argv[2], json.loads(argv[3]))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mailbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small volumes")
    parser.add_argument("--json", action="store_true", help="print the JSON result too")
    args = parser.parse_args(argv)
    found = run(QUICK if args.quick else FULL)
    if args.json:
        print(json.dumps(found, indent=1))
    print(markdown(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
