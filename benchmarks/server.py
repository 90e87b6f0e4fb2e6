"""A minimal loopback SSE server for the benchmarks, run in its own process.

Why not the emulator: the emulator is a faithful Lens (sessions, auth, faults) built on
``http.server``, and it formats frames as it goes. A benchmark needs the opposite: bytes built
before the clock starts and written with one ``sendall`` per 64 KiB, so that the server is never
what limits a contender. Running it in a separate process keeps it off the contenders' GIL.

Control API (JSON):

- ``POST /bench/scenarios`` with ``{"kind": ..., params}`` creates a scenario and returns
  ``{"session_id": ..., "session_ids": [...]}``; its bytes are built now, before any timing;
- ``GET /bench/scenarios/{id}`` returns what the server saw (connections, drops, closes);
- ``POST /bench/scenarios/{id}/stop`` ends a scenario (fan-in sessions are closed).

Streams: ``GET .../lens/sessions/consumer/{id}`` under any base path (``/api``, ``/v0.5``).
Every stream opens with ``sse.stream.start``. Kinds:

- ``bulk`` (``n``): ``n`` results in 64 KiB chunks as fast as the socket takes them, then
  ``sse.stream.end``;
- ``paced`` (``n``, ``rate``): one stamped result per chunk at ``rate`` per second;
- ``large`` (``sizes``, ``gap``): one stamped result of each size, ``gap`` seconds apart;
- ``first`` (``delay``, ``hold``): a close-delimited response (no chunking, no length): one
  stamped result after ``delay``, then silence for ``hold`` seconds;
- ``silent`` (``hold``): the start frame, then silence; records when the client hung up;
- ``resume`` (``n``, ``rate``, ``drop_every``): results produced live at ``rate`` per second;
  honours ``Last-Event-ID``; a connection is cut mid-frame after ``drop_every`` results; a
  reconnection without a cursor gets only what is produced from then on (a live stream);
- ``fanin`` (``sessions``, ``interval``): ``sessions`` session ids, each sent one stamped
  result every ``interval`` seconds, phases spread over the interval. These streams are served
  by a lean asyncio server on a port of its own (``stream_port`` in the answer; see
  :class:`_LeanFanin` for why).

Run: ``python -m benchmarks.server`` prints ``{"port": N}`` and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import re
import select
import socket
import sys
import threading
import time
from typing import Any

from benchmarks import frames

_CONSUMER = re.compile(r"/lens/sessions/consumer/([^/?#]+)")
_SCENARIO = re.compile(r"^/bench/scenarios/([^/?#]+)(/stop)?$")
_MAX_HEAD = 65536


def _now() -> int:
    return time.monotonic_ns()


class Scenario:
    """One benchmark stream set-up, and what the server saw while serving it."""

    def __init__(self, sid: str, spec: dict[str, Any]) -> None:
        self.sid = sid
        self.kind = str(spec["kind"])
        self.spec = spec
        self.lock = threading.Lock()
        self.connections: list[dict[str, Any]] = []
        self.body = b""
        self.stopped = threading.Event()
        self.started_at: float | None = None
        self.sent = 0
        if self.kind == "bulk" and int(spec["n"]) <= 400_000:
            self.body = frames.bulk(1, int(spec["n"]))
        if self.kind == "large":
            self.large = [frames.LargeEvent(i + 1, int(s)) for i, s in enumerate(spec["sizes"])]
        self.session_ids = [sid]
        if self.kind == "fanin":
            count = int(spec["sessions"])
            self.session_ids = [f"{sid}-{i}" for i in range(count)]
            self.lean: _LeanTicker | None = None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "kind": self.kind,
                "connections": list(self.connections),
                "sent": self.sent,
                "open": self.lean.open_count() if getattr(self, "lean", None) else None,
            }


class _LeanFanin:
    """The fan-in streams: one asyncio loop on one thread, on a port of its own.

    Why not the thread-per-connection server above: measured at 10,000 sessions, it held
    thousands of threads, each blocked in ``recv`` until its client sent the request, and
    accepted too slowly for the clients' connects (SYN and accept queues overflowed, connects
    were retried by the kernel after 1, 3, 7 s); sessions not open within the client's
    15 s heartbeat timeout reconnected, which opened more connections: a storm, and nothing
    delivered. Here a connection costs a socket and a heap entry, frames go out with
    non-blocking writes (a slow reader grows its own buffer and the lag it shows, and never
    holds up the others), and one timer wakes per due frame. This is the issue's "lean
    loopback server" for the benchmark; the emulator is a faithful Lens, not this.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        import asyncio

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        self.scenarios: dict[str, Scenario] = {}
        ready = threading.Event()
        self.port = 0

        async def start() -> None:
            server = await self.loop.create_server(
                lambda: _LeanStream(self), host, 0, backlog=65535
            )
            self.port = server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.create_task(start())
            self.loop.run_forever()

        threading.Thread(target=run, name="fanin-lean", daemon=True).start()
        ready.wait()

    def add(self, scenario: Scenario) -> None:
        """Serve ``scenario``'s sessions (from now on); its ticker runs until it is stopped."""
        done = threading.Event()

        def start() -> None:
            self._start(scenario)
            done.set()

        self.loop.call_soon_threadsafe(start)
        done.wait()

    def _start(self, scenario: Scenario) -> None:
        for sid in scenario.session_ids:
            self.scenarios[sid] = scenario
        scenario.lean = _LeanTicker(scenario, self.loop)

    def stop(self, scenario: Scenario) -> None:
        self.loop.call_soon_threadsafe(self._stop, scenario)

    def _stop(self, scenario: Scenario) -> None:
        for sid in scenario.session_ids:
            self.scenarios.pop(sid, None)
        ticker = getattr(scenario, "lean", None)
        if ticker is not None:
            ticker.close()


class _LeanTicker:
    """Writes one stamped frame per session per interval, phases spread over the interval.

    A session's numbers go on across its connections: a reconnection with ``Last-Event-ID``
    gets the next number after it (so "exactly once" holds across a reconnect), one without
    gets the session's next number (a live stream). One connection per session is written to:
    a reconnection replaces the one before.
    """

    def __init__(self, scenario: Scenario, loop: Any) -> None:
        self.scenario = scenario
        self.loop = loop
        self.interval = float(scenario.spec.get("interval", 1.0))
        self.count = len(scenario.session_ids)
        self.index = {sid: i for i, sid in enumerate(scenario.session_ids)}
        self.heap: list[tuple[float, int]] = []
        self.conns: dict[int, Any] = {}
        self.next_seq = [1] * self.count
        self.scheduled = [False] * self.count
        self.handle: Any = None

    def add(self, sid: str, transport: Any, last_event_id: str) -> None:
        index = self.index[sid]
        if last_event_id.isdigit() and len(last_event_id) < 19:
            self.next_seq[index] = int(last_event_id) + 1
        old = self.conns.get(index)
        if old is not None and old is not transport:
            old.close()
        self.conns[index] = transport
        if not self.scheduled[index]:
            self.scheduled[index] = True
            due = time.monotonic() + 0.2 + self.interval * index / self.count
            heapq.heappush(self.heap, (due, index))
            self._arm()

    def _arm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        if self.heap:
            self.handle = self.loop.call_at(self.heap[0][0], self._tick)

    def _tick(self) -> None:
        self.handle = None
        heap, scenario = self.heap, self.scenario
        now = time.monotonic()
        sent = 0
        while heap and heap[0][0] <= now:
            due, index = heapq.heappop(heap)
            transport = self.conns.get(index)
            if transport is None or transport.is_closing():
                self.conns.pop(index, None)
                self.scheduled[index] = False
                continue
            seq = self.next_seq[index]
            self.next_seq[index] = seq + 1
            transport.write(frames.chunk(frames.result(seq, _now())))
            sent += 1
            heapq.heappush(heap, (due + self.interval, index))
        with scenario.lock:
            scenario.sent += sent
        self._arm()

    def open_count(self) -> int:
        return sum(1 for t in list(self.conns.values()) if not t.is_closing())

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.heap.clear()
        for transport in self.conns.values():
            transport.close()
        self.conns.clear()


class _LeanStream:
    """One fan-in connection (an asyncio protocol): read the request head, answer, register."""

    def __init__(self, server: _LeanFanin) -> None:
        self.server = server
        self.head = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            return  # a request body or a second request: a stream reads nothing more
        self.head += data
        if b"\r\n\r\n" not in self.head:
            if len(self.head) > _MAX_HEAD:
                self.transport.close()
            return
        lines = self.head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        line = lines[0]
        cursor = ""
        for header in lines[1:]:
            name, _, value = header.partition(":")
            if name.strip().lower() == "last-event-id":
                cursor = value.strip()
        self.head = None  # type: ignore[assignment]
        parts = line.split(" ")
        match = _CONSUMER.search(parts[1]) if len(parts) == 3 and parts[0] == "GET" else None
        scenario = self.server.scenarios.get(match.group(1)) if match else None
        ticker = getattr(scenario, "lean", None)
        if match is None or scenario is None or ticker is None:
            body = json.dumps({"errors": ["Unknown session id"]}).encode()
            self.transport.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()
            return
        sid = match.group(1)
        with scenario.lock:
            scenario.connections.append({"at": _now(), "last_event_id": cursor or None})
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache"
            b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + frames.chunk(frames.start(sid, ticker.index[sid] + 1))
        )
        ticker.add(sid, self.transport, cursor)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None

    def pause_writing(self) -> None:
        pass  # the buffer grows: the reader is slow, and its lag shows it

    def resume_writing(self) -> None:
        pass


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


def _hung_up(conn: socket.socket, seconds: float, stop: threading.Event) -> int | None:
    """Wait up to ``seconds`` for the client to close; return when it did (monotonic ns)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        readable, _, _ = select.select([conn], [], [], min(left, 0.05))
        if readable:
            try:
                data = conn.recv(65536)
            except OSError:
                return _now()
            if not data:
                return _now()
    return None


class BenchServer:
    """The server: an accept loop and one thread per connection (fan-in hands off its sockets)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.create_server((host, port), backlog=4096)
        self.port = self.sock.getsockname()[1]
        self.scenarios: dict[str, Scenario] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.readers = itertools.count(1)
        #: The fan-in streams' server, started with the first fan-in scenario.
        self.lean: _LeanFanin | None = None

    def serve_forever(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    # -- requests ---------------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        keep = False
        try:
            keep = self._dispatch(conn)
        except OSError:
            pass  # the client went away: nothing to report
        finally:
            if not keep:
                _close(conn)

    def _dispatch(self, conn: socket.socket) -> bool:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(65536)
            if not data or len(head) > _MAX_HEAD:
                return False
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "POST" and path == "/bench/scenarios":
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                data = conn.recv(65536)
                if not data:
                    return False
                rest += data
            scenario = self._create(json.loads(rest[:length]))
            created: dict[str, Any] = {
                "session_id": scenario.sid,
                "session_ids": scenario.session_ids,
            }
            if scenario.kind == "fanin" and self.lean is not None:
                created["stream_port"] = self.lean.port
            _json(conn, 200, created)
            return False
        match = _SCENARIO.match(path)
        if match:
            found = self.scenarios.get(match.group(1))
            if found is None:
                _json(conn, 404, {"error": "unknown scenario"})
            elif match.group(2):
                found.stopped.set()
                if found.kind == "fanin" and self.lean is not None:
                    self.lean.stop(found)
                _json(conn, 200, found.stats())
            else:
                _json(conn, 200, found.stats())
            return False
        match = _CONSUMER.search(path)
        if method == "GET" and match:
            sid = match.group(1)
            base = sid.rsplit("-", 1)[0] if sid not in self.scenarios else sid
            found = self.scenarios.get(sid) or self.scenarios.get(base)
            if found is None:
                _json(conn, 404, {"errors": [f"Unknown session id: {sid}"]})
                return False
            return self._stream(conn, found, sid, headers)
        _json(conn, 404, {"error": "not found"})
        return False

    def _create(self, spec: dict[str, Any]) -> Scenario:
        sid = f"lsn-bench{next(self.ids):04d}"
        scenario = Scenario(sid, spec)
        with self.lock:
            self.scenarios[sid] = scenario
            if scenario.kind == "fanin" and self.lean is None:
                self.lean = _LeanFanin()
        if scenario.kind == "fanin":
            assert self.lean is not None
            self.lean.add(scenario)
        return scenario

    # -- streams ----------------------------------------------------------------------------

    def _stream(
        self, conn: socket.socket, scenario: Scenario, sid: str, headers: dict[str, str]
    ) -> bool:
        kind = scenario.kind
        spec = scenario.spec
        record: dict[str, Any] = {"at": _now(), "last_event_id": headers.get("last-event-id")}
        with scenario.lock:
            scenario.connections.append(record)
            first_connection = len(scenario.connections) == 1
        chunked = kind != "first"
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            + ("Transfer-Encoding: chunked\r\n" if chunked else "Connection: close\r\n")
            + "\r\n"
        ).encode()
        opening = frames.start(sid, next(self.readers))
        if kind == "first":
            conn.sendall(head)
            time.sleep(float(spec.get("delay", 0.05)))
            record["written"] = _now()
            conn.sendall(frames.result(1, record["written"]))
            record["closed"] = _hung_up(conn, float(spec.get("hold", 2.0)), scenario.stopped)
            return False
        conn.sendall(head + frames.chunk(opening))
        if kind == "bulk":
            n = int(spec["n"])
            if scenario.body:
                body, scenario.body = scenario.body, b""  # served once: free it after
                conn.sendall(body)
            else:
                step = 8192
                for lo in range(1, n + 1, step):
                    conn.sendall(frames.bulk(lo, min(step, n + 1 - lo)))
            conn.sendall(frames.chunk(frames.end(n)) + frames.LAST_CHUNK)
            record["done"] = _now()
            return False
        if kind == "paced":
            n, rate = int(spec["n"]), float(spec["rate"])
            t0 = time.monotonic() + 0.1
            for i in range(1, n + 1):
                delay = t0 + (i - 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                conn.sendall(frames.chunk(frames.result(i, _now())))
            conn.sendall(frames.chunk(frames.end(n)) + frames.LAST_CHUNK)
            return False
        if kind == "large":
            gap = float(spec.get("gap", 0.2))
            for event in scenario.large:
                time.sleep(gap)
                first, rest = event.parts(_now())
                conn.sendall(first)
                conn.sendall(rest)
            time.sleep(gap)
            conn.sendall(frames.chunk(frames.end(len(scenario.large))) + frames.LAST_CHUNK)
            return False
        if kind == "silent":
            record["closed"] = _hung_up(conn, float(spec.get("hold", 15.0)), scenario.stopped)
            return False
        if kind == "resume":
            self._resume(conn, scenario, record, headers, first_connection)
            return False
        return False

    def _resume(
        self,
        conn: socket.socket,
        scenario: Scenario,
        record: dict[str, Any],
        headers: dict[str, str],
        first_connection: bool,
    ) -> None:
        spec = scenario.spec
        n, rate, drop_every = int(spec["n"]), float(spec["rate"]), int(spec["drop_every"])
        with scenario.lock:
            if scenario.started_at is None:
                scenario.started_at = time.monotonic()
            started = scenario.started_at

        def produced() -> int:
            return min(n, int((time.monotonic() - started) * rate))

        cursor = headers.get("last-event-id", "")
        if cursor.isdigit():
            nxt = int(cursor) + 1
        elif first_connection:
            nxt = 1
        else:
            nxt = produced() + 1  # live: what happened while away is gone
        record["from"] = nxt
        sent = 0
        while nxt <= n:
            available = produced()
            if available < nxt:
                time.sleep(0.0005)
                continue
            upto = min(available, nxt + (drop_every - sent) - 1, nxt + frames.BULK_FRAMES - 1)
            conn.sendall(frames.bulk(nxt, upto - nxt + 1))
            sent += upto - nxt + 1
            nxt = upto + 1
            if sent >= drop_every and nxt <= n:
                # Cut mid-frame: half of the next frame, then the connection goes away.
                half = frames.result(nxt)
                conn.sendall(frames.chunk(half[: len(half) // 2]))
                record["dropped"] = _now()
                record["sent"] = sent
                return
        conn.sendall(frames.chunk(frames.end(n)) + frames.LAST_CHUNK)
        record["sent"] = sent
        record["done"] = _now()


def _json(conn: socket.socket, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    reason = "OK" if status == 200 else "Not Found"
    conn.sendall(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )


def main(argv: list[str] | None = None) -> None:
    """Serve until stdin closes (the harness holds the pipe: the server dies with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = BenchServer(port=args.port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.port, "pid": os.getpid()}), flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
