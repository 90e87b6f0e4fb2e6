"""Client-side helpers for the emulator tests: plain ``requests`` and raw sockets, no rxlens.

(No tests here; the module name only matches the test modules it serves.)
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from rxlens.emulator import LensEmulator


@dataclass
class Frame:
    """One SSE frame as a client sees it."""

    event: str | None
    id: str | None
    data: str
    retry: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def type(self) -> str:
        return str(self.json["type"])


def parse_frames(lines: Iterator[bytes]) -> Iterator[Frame]:
    """Frames from the lines of an SSE body (LF or CRLF)."""
    fields: dict[str, list[str]] = {}
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r")
        if not line:
            if fields:
                yield Frame(
                    event=fields.get("event", [None])[-1],
                    id=fields.get("id", [None])[-1],
                    data="\n".join(fields.get("data", [])),
                    retry=fields.get("retry", [None])[-1],
                )
                fields = {}
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


def open_stream(
    emu: LensEmulator,
    session_id: str,
    *,
    last_event_id: str | int | None = None,
    prefix: str = "/api",
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> requests.Response:
    """GET the consumer endpoint with ``requests`` (streamed)."""
    hdrs = dict(emu.headers if headers is None else headers)
    hdrs["Accept"] = "text/event-stream"
    if last_event_id is not None:
        hdrs["Last-Event-ID"] = str(last_event_id)
    return requests.get(
        emu.consumer_url(session_id, prefix), headers=hdrs, stream=True, timeout=timeout
    )


def frames_of(response: requests.Response) -> Iterator[Frame]:
    # chunk_size=None: urllib3 hands over each HTTP chunk as it arrives.
    return parse_frames(response.iter_lines(chunk_size=None, delimiter=b"\n"))


def take(frames: Iterator[Frame], n: int) -> list[Frame]:
    return [next(frames) for _ in range(n)]


def until_type(frames: Iterator[Frame], event_type: str) -> list[Frame]:
    """Every frame up to and including the first of ``event_type``."""
    out = []
    for frame in frames:
        out.append(frame)
        if frame.type == event_type:
            return out
    raise AssertionError(f"stream ended before {event_type}: {[f.data[:60] for f in out]}")


def result(i: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"r{i}"]}}


def raw_get(
    emu: LensEmulator,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> socket.socket:
    """Send a bare GET on a new socket; the caller reads the raw response."""
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=timeout)
    hdrs = {"Host": f"127.0.0.1:{emu.port}", **(emu.headers if headers is None else headers)}
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    sock.sendall((head + "\r\n").encode())
    return sock


def read_raw(sock: socket.socket, *, until: bytes | None = None, timeout: float = 5.0) -> bytes:
    """Read until ``until`` appears, the peer closes, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    data = b""
    while until is None or until not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """Decode an HTTP chunked body; returns the payload and whether the last chunk came."""
    out = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            return out, False
        size = int(size_line, 16)
        if size == 0:
            return out, True
        out += rest[:size]
        body = rest[size + 2 :]
    return out, False


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body
