"""The contenders: every way a Python program can read a Lens stream, driven the same way.

Each contender is used as its own documentation shows, and hands the subscriber what that
library's users get. So that all of them do the same work per event, the subscriber code of the
contenders that yield raw frames (rxlens raw, sseclient-py, httpx-sse, the limit) decodes each
frame's JSON, as their READMEs do; the vendor SDK decodes it itself; rxlens typed hands out typed
events. Every subscriber then keeps the ``inference.result`` events and stops at
``sse.stream.end``, like a Lens application.

A contender is started on one session with a :class:`Sink`; :meth:`Handle.close` stops it the
way its users would (dispose, ``close()``), from another thread.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import json.scanner
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.control import Server
from benchmarks.frames import END, RESULT, seq_of, stamp_of

#: Sent as the bearer token: the benchmark server does not check it.
API_KEY = "bench-not-a-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Sink:
    """Receives one session's results; ``keep`` also records (arrival ns, payload) pairs.

    ``stamps`` records (arrival ns, server write ns, number) instead, three ints read from the
    payload as it arrives: a fan-in run holding every payload of ten thousand sessions would
    grow the heap by hundreds of thousands of objects, and the interpreter's full garbage
    collections over that heap (hundreds of ms each, measured) would be charged to the
    contender as delivery lag. A tuple of ints leaves the collector's lists at its first pass.
    """

    def __init__(self, keep: bool = False, stamps: bool = False) -> None:
        self.count = 0
        self.keep = keep or stamps
        self.records: list[tuple[int, Any]] = []
        self.stamps: list[tuple[int, int, int]] = []
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.ended_ns = 0
        self.item: Callable[[Any], None] = (
            self._stamp if stamps else self._record if keep else self._count
        )

    def _count(self, payload: Any) -> None:
        self.count += 1

    def _record(self, payload: Any) -> None:
        self.records.append((time.monotonic_ns(), payload))
        self.count += 1

    def _stamp(self, payload: Any) -> None:
        arrived = time.monotonic_ns()
        self.stamps.append((arrived, stamp_of(payload), seq_of(payload)))
        self.count += 1

    def end(self) -> None:
        """The stream ended (``sse.stream.end`` seen, or the pipeline completed)."""
        if not self.done.is_set():
            self.ended_ns = time.monotonic_ns()
            self.done.set()

    def fail(self, error: BaseException) -> None:
        """The stream failed before its end (ignored after the end)."""
        if not self.done.is_set():
            self.error = error
            self.end()


@dataclass
class Handle:
    """A started contender: ``close`` stops it as its users would."""

    close: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contender:
    """One way to read a Lens stream."""

    key: str
    label: str
    requires: str
    #: Whether it reconnects by itself after a drop.
    resumes: bool
    setup: Callable[[Server], Any]
    start: Callable[[Any, str, Sink, dict[str, Any]], Handle]
    teardown: Callable[[Any], None] = lambda ctx: None

    def available(self) -> bool:
        return importlib.util.find_spec(self.requires) is not None


def _run_thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


# --- rxlens -----------------------------------------------------------------------------------


def _typed_setup(server: Server) -> Any:
    from rxlens import LensClient

    return LensClient(api_key=API_KEY, base_url=server.api_base)


def _typed_start(client: Any, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
    from rxlens.operators import only_results

    pipeline = client.events(sid, check_channel=False, policy=options.get("policy")).pipe(
        only_results()
    )
    subscription = pipeline.subscribe(sink.item, sink.fail, sink.end)
    return Handle(subscription.dispose)


def _typed_teardown(client: Any) -> None:
    client.close()


def _asyncio_setup(server: Server) -> Any:
    from rxlens import LensClient

    return LensClient(api_key=API_KEY, base_url=server.api_base, io="asyncio")


def _raw_setup(server: Server) -> Any:
    return server


def _raw_reader(method: bool) -> Callable[[Server, str, Sink, dict[str, Any]], Handle]:
    """A raw-frames contender: its subscriber decodes each frame's JSON with ``frame.json()``
    (``method``, as the README shows) or with its own ``json.loads(frame.data)``."""

    def start(server: Server, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
        from rxlens.sse import connect, stream

        url = server.consumer_url(sid)
        policy = options.get("policy")
        # connect() is one connection; stream() is connect + resume, for the resume measure.
        source = connect(url, headers=AUTH) if policy is None else stream(url, policy, headers=AUTH)
        loads = json.loads
        item = sink.item

        # The per-frame steps are written out in each subscriber (here and in every contender)
        # rather than shared through a helper: a call more per event would be charged to it.
        def on_json(frame: Any) -> None:
            payload = frame.json()
            kind = payload["type"]
            if kind == RESULT:
                item(payload)
            elif kind == END:
                sink.end()

        def on_loads(frame: Any) -> None:
            payload = loads(frame.data)
            kind = payload["type"]
            if kind == RESULT:
                item(payload)
            elif kind == END:
                sink.end()

        on_next = on_json if method else on_loads
        subscription = source.subscribe(on_next, sink.fail, sink.end)
        return Handle(subscription.dispose)

    return start


_raw_start = _raw_reader(method=True)
_raw_loads_start = _raw_reader(method=False)


# --- the vendor SDK ---------------------------------------------------------------------------


def _vendor_setup(server: Server) -> Any:
    from archetypeai.api_client import ArchetypeAI

    client = ArchetypeAI(API_KEY, api_endpoint=server.api_base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the lens API is marked deprecated
        return client.lens.sessions


def _vendor_start(sessions: Any, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
    reader = sessions.create_sse_consumer(sid)
    item = sink.item

    def consume() -> None:
        # read(block=True) stops early once the worker has stopped, even with events still
        # queued: call it again until the queue is drained.
        while not sink.done.is_set():
            for payload in reader.read(block=True):
                kind = payload["type"]
                if kind == RESULT:
                    item(payload)
                elif kind == END:
                    sink.end()
                    return
            if reader.worker is None and reader.read_event_queue.empty():
                sink.fail(RuntimeError("the SDK reader stopped"))
                return

    _run_thread(consume, "vendor-consumer")
    return Handle(reader.close, {"reader": reader})


def _vendor_poll_start(sessions: Any, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
    """The SDK reader without a consumer thread: the fan-in measure polls ``read()``."""
    reader = sessions.create_sse_consumer(sid)
    return Handle(reader.close, {"reader": reader})


# --- sseclient-py over requests, as its README shows ------------------------------------------


def _sseclient_start(server: Server, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
    import requests
    import sseclient

    holder: dict[str, Any] = {}
    url = server.consumer_url(sid)
    item = sink.item

    def run() -> None:
        try:
            res = requests.get(url, stream=True, headers=AUTH)
            client = sseclient.SSEClient(res)  # type: ignore[arg-type]
            holder["client"] = client
            for event in client.events():
                payload = json.loads(event.data)
                kind = payload["type"]
                if kind == RESULT:
                    item(payload)
                elif kind == END:
                    sink.end()
                    return
            sink.fail(RuntimeError("stream closed"))
        except Exception as exc:
            sink.fail(exc)

    _run_thread(run, "sseclient-reader")

    def close() -> None:
        client = holder.get("client")
        if client is not None:
            client.close()

    return Handle(close)


# --- httpx-sse, as its README shows ----------------------------------------------------------


def _httpx_sse_start(server: Server, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
    import httpx
    from httpx_sse import connect_sse

    holder: dict[str, Any] = {}
    url = server.consumer_url(sid)
    item = sink.item

    def run() -> None:
        try:
            with (
                httpx.Client() as client,
                connect_sse(client, "GET", url, headers=dict(AUTH)) as event_source,
            ):
                holder["response"] = event_source.response
                for sse in event_source.iter_sse():
                    payload = sse.json()
                    kind = payload["type"]
                    if kind == RESULT:
                        item(payload)
                    elif kind == END:
                        sink.end()
                        return
            sink.fail(RuntimeError("stream closed"))
        except Exception as exc:
            sink.fail(exc)

    _run_thread(run, "httpx-sse-reader")

    def close() -> None:
        response = holder.get("response")
        if response is not None:
            response.close()

    return Handle(close)


# --- the limit: a socket, a split and json.loads ----------------------------------------------


def _limit_start(server: Server, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
    """The least work any Python client must do: read, undo the chunking, split, decode."""
    return _limit_reader(server, sid, sink, scanner=False)


def _limit_scan_start(server: Server, sid: str, sink: Sink, options: dict[str, Any]) -> Handle:
    """The limit with the stdlib's C JSON scanner called directly, as rxlens decodes JSON: a
    reference row (the ratios stay against the limit with ``json.loads``)."""
    return _limit_reader(server, sid, sink, scanner=True)


def _limit_reader(server: Server, sid: str, sink: Sink, scanner: bool) -> Handle:
    sock = socket.create_connection((server.host, server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    path = server.consumer_url(sid).split(str(server.port), 1)[1]
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {server.host}\r\nAccept: text/event-stream\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    item = sink.item

    def run() -> None:
        try:
            _limit_loop(sock, item, sink, scanner)
        except OSError as exc:
            sink.fail(exc)
        finally:
            sock.close()

    _run_thread(run, "limit-reader")

    def close() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    return Handle(close)


def _limit_loop(
    sock: socket.socket, item: Callable[[Any], None], sink: Sink, scanner: bool
) -> None:
    recv = sock.recv
    loads = json.loads
    # json.loads's value without its wrapper when the scan covers the whole text (else
    # json.loads decides): rxlens's JSON decoding (rxlens/_json.py), written out here.
    scan = json.scanner.c_make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]
    head = b""
    while b"\r\n\r\n" not in head:
        data = recv(65536)
        if not data:
            raise OSError("closed before the headers")
        head += data
    head, _, raw = head.partition(b"\r\n\r\n")
    chunked = b"transfer-encoding: chunked" in head.lower()
    body: list[bytes] = []  # SSE bytes not yet split into frames, in pieces
    left = 0  # bytes of the current HTTP chunk still to come
    finished = False  # the last chunk came
    while True:
        fresh: list[bytes] = []
        if chunked:
            # Undo the chunked framing: take whole chunk payloads out of ``raw``.
            while raw:
                if left > 0:
                    take = raw[:left]
                    fresh.append(take)
                    left -= len(take)
                    raw = raw[len(take) :]
                    if left == 0:
                        left = -2  # the CRLF after the payload
                    continue
                if left < 0:
                    skip = min(-left, len(raw))
                    raw = raw[skip:]
                    left += skip
                    continue
                line_end = raw.find(b"\r\n")
                if line_end < 0:
                    break
                size = int(raw[:line_end], 16)
                raw = raw[line_end + 2 :]
                if size == 0:
                    raw = b""
                    finished = True
                    break
                left = size
        else:
            fresh.append(raw)
            raw = b""
        new = b"".join(fresh)
        # Join and split only when a frame can have ended: a large event costs one join.
        edge = (body[-1][-1:] if body else b"") + new[:1]
        frames: list[str] = []
        if b"\n\n" not in new and edge != b"\n\n":
            if new:
                body.append(new)
        else:
            body.append(new)
            text = b"".join(body)
            cut = text.rfind(b"\n\n")
            rest = text[cut + 2 :]
            body = [rest] if rest else []
            # One decode per read (json.loads of bytes would detect the encoding per frame).
            frames = text[:cut].decode("utf-8", "replace").split("\n\n")
        # Two loops rather than a test per frame: the limit pays for no choice of its own.
        if scanner:
            for frame in frames:
                value = frame[frame.find("data: ") + 6 :]
                payload, end = scan(value, 0)
                if end != len(value):
                    payload = loads(value)
                kind = payload["type"]
                if kind == RESULT:
                    item(payload)
                elif kind == END:
                    sink.end()
                    return
        else:
            for frame in frames:
                payload = loads(frame[frame.find("data: ") + 6 :])
                kind = payload["type"]
                if kind == RESULT:
                    item(payload)
                elif kind == END:
                    sink.end()
                    return
        if finished:
            sink.fail(OSError("the body ended without sse.stream.end"))
            return
        data = recv(262144)
        if not data:
            sink.fail(OSError("closed"))
            return
        # ``raw`` may still hold the start of a chunk-size line.
        raw = raw + data if raw else data


CONTENDERS: dict[str, Contender] = {
    c.key: c
    for c in (
        Contender(
            "rxlens-typed",
            "rxlens typed (client.events + only_results)",
            "rxlens",
            True,
            _typed_setup,
            _typed_start,
            _typed_teardown,
        ),
        Contender(
            "rxlens-asyncio",
            'rxlens typed on one asyncio I/O thread (LensClient(io="asyncio"))',
            "aiohttp",
            True,
            _asyncio_setup,
            _typed_start,
            _typed_teardown,
        ),
        Contender(
            "rxlens-raw",
            "rxlens raw frames (rxlens.sse.connect, frame.json())",
            "rxlens",
            True,
            _raw_setup,
            _raw_start,
        ),
        Contender(
            "rxlens-raw-loads",
            "rxlens raw frames, the subscriber's own json.loads(frame.data)",
            "rxlens",
            True,
            _raw_setup,
            _raw_loads_start,
        ),
        Contender(
            "vendor-sdk",
            "vendor SDK (archetypeai create_sse_consumer)",
            "archetypeai",
            True,
            _vendor_setup,
            _vendor_start,
        ),
        Contender(
            "sseclient-py",
            "sseclient-py over requests",
            "sseclient",
            False,
            _raw_setup,
            _sseclient_start,
        ),
        Contender("httpx-sse", "httpx-sse", "httpx_sse", False, _raw_setup, _httpx_sse_start),
        Contender(
            "limit", "limit: socket + split + json.loads", "json", False, _raw_setup, _limit_start
        ),
        Contender(
            "limit-scan",
            "limit with the C JSON scanner (reference)",
            "json",
            False,
            _raw_setup,
            _limit_scan_start,
        ),
    )
}

#: Contenders of the throughput measure only: how much of the raw frames' cost is the JSON
#: decoding's Python wrapper, on either side of the comparison.
THROUGHPUT_ONLY = ("rxlens-raw-loads", "limit-scan")

#: The fan-in variant of the vendor SDK: readers polled by one thread instead of one each.
VENDOR_POLL = _vendor_poll_start


def quiet_logs() -> None:
    """The vendor SDK logs every reconnection with a traceback: keep the output readable."""
    logging.disable(logging.CRITICAL)
