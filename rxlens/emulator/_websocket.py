"""A WebSocket (RFC 6455) on the emulator's own HTTP connections, with the standard library only.

The emulator is a ``ThreadingHTTPServer``: every connection already has its thread and its
tracked socket, so a WebSocket is a GET that answers ``101`` and then reads and writes frames
on the same ``rfile``/``wfile``. This module is that part and nothing else: the handshake, the
frames (masked from the client, unmasked to it; fragments reassembled; ping answered; close
echoed), and a size cap. What the messages mean is the caller's business.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
from collections.abc import Mapping
from typing import BinaryIO

#: The RFC 6455 constant appended to the client's key.
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: Close codes the emulator uses.
NORMAL, GOING_AWAY, PROTOCOL_ERROR, TOO_BIG, INTERNAL_ERROR = 1000, 1001, 1002, 1009, 1011


class ProtocolError(Exception):
    """The peer broke the framing rules (the connection is closed with 1002 or 1009)."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


def is_upgrade(headers: Mapping[str, str]) -> bool:
    """Whether a request asks for a WebSocket (``Upgrade: websocket`` with a key)."""
    upgrade = headers.get("Upgrade", "")
    return upgrade.lower() == "websocket" and bool(headers.get("Sec-WebSocket-Key"))


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` answer to a client's ``Sec-WebSocket-Key``.

    >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")  # the example of RFC 6455, section 1.3
    's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    digest = hashlib.sha1((key + _GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    """The subprotocols the client offered, in order."""
    value = headers.get("Sec-WebSocket-Protocol", "")
    return [part.strip() for part in value.split(",") if part.strip()]


def handshake(key: str, subprotocol: str | None = None) -> bytes:
    """The ``101 Switching Protocols`` response, head only."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One final, unmasked frame (a server never masks)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def _read_exact(rfile: BinaryIO, size: int) -> bytes:
    data = rfile.read(size)
    if data is None or len(data) < size:
        raise EOFError("the connection closed mid-frame")
    return data


def read_frame(rfile: BinaryIO, max_size: int) -> tuple[bool, int, bytes]:
    """Read one client frame: ``(fin, opcode, unmasked payload)``.

    Raises:
        ProtocolError: an unmasked frame, reserved bits, a control frame that is fragmented or
            longer than 125 bytes, or a payload over ``max_size`` (code 1009).
        EOFError: the connection closed.
    """
    first, second = _read_exact(rfile, 2)
    fin, opcode = bool(first & 0x80), first & 0x0F
    if first & 0x70:
        raise ProtocolError("reserved bits set (no extension was agreed)")
    if not second & 0x80:
        raise ProtocolError("a client frame must be masked")
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", _read_exact(rfile, 8))
    if opcode >= CLOSE and (not fin or size > 125):
        raise ProtocolError("a control frame must be whole and at most 125 bytes")
    if size > max_size:
        raise ProtocolError(f"a frame of {size} bytes is over the {max_size}-byte cap", TOO_BIG)
    mask = _read_exact(rfile, 4)
    payload = _read_exact(rfile, size)
    if size:
        # XOR with the repeated mask, as one big integer: linear and fast in pure Python.
        repeated = (mask * (size // 4 + 1))[:size]
        payload = (
            int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
        ).to_bytes(size, "big")
    return fin, opcode, payload


class WebSocket:
    """The server side of one upgraded connection. ``send_*`` may be called from any thread."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, *, max_size: int = 16 * 1024 * 1024):
        self._rfile = rfile
        self._wfile = wfile
        self.max_size = max_size
        self._write_lock = threading.Lock()
        self.closed = False
        #: The close code the client sent, once it did.
        self.close_code: int | None = None

    def _write(self, frame: bytes) -> None:
        with self._write_lock:
            self._wfile.write(frame)
            self._wfile.flush()

    def send_text(self, text: str) -> None:
        self._write(encode_frame(TEXT, text.encode("utf-8")))

    def close(self, code: int = NORMAL, reason: str = "") -> None:
        """Send a close frame (once); the caller then ends the connection."""
        if self.closed:
            return
        self.closed = True
        try:
            self._write(encode_frame(CLOSE, struct.pack("!H", code) + reason.encode()[:120]))
        except OSError:
            pass  # the peer is gone already

    def receive(self) -> str | bytes | None:
        """The next whole message (text as ``str``), or ``None`` once the client closed.

        Pings are answered and pongs ignored on the way. A broken frame closes the connection
        with the matching code and returns ``None``.
        """
        parts: list[bytes] = []
        kind: int | None = None
        try:
            while True:
                fin, opcode, payload = read_frame(self._rfile, self.max_size)
                if opcode == CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if payload else NORMAL
                    self.close(self.close_code if self.close_code != 1005 else NORMAL)
                    return None
                if opcode == PING:
                    self._write(encode_frame(PONG, payload))
                    continue
                if opcode == PONG:
                    continue
                if opcode in (TEXT, BINARY):
                    if kind is not None:
                        raise ProtocolError("a new message began inside a fragmented one")
                    kind = opcode
                elif opcode == CONTINUATION:
                    if kind is None:
                        raise ProtocolError("a continuation frame without a message")
                else:
                    raise ProtocolError(f"unknown opcode {opcode:#x}")
                parts.append(payload)
                if sum(map(len, parts)) > self.max_size:
                    raise ProtocolError("a message over the size cap", TOO_BIG)
                if fin:
                    data = b"".join(parts)
                    if kind == TEXT:
                        try:
                            return data.decode("utf-8")
                        except UnicodeDecodeError:
                            raise ProtocolError("a text message that is not UTF-8", 1007) from None
                    return data
        except ProtocolError as error:
            self.close(error.code, str(error)[:100])
            return None
        except (EOFError, OSError, ValueError):
            self.closed = True
            return None


__all__ = [
    "ProtocolError",
    "WebSocket",
    "accept_key",
    "encode_frame",
    "handshake",
    "is_upgrade",
    "offered_subprotocols",
    "read_frame",
]
