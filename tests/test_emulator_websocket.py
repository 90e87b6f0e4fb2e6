"""The emulator's standard-library WebSocket: framing rules, and a real client talking to it."""

from __future__ import annotations

import io
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rxlens.emulator._websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    ProtocolError,
    WebSocket,
    accept_key,
    encode_frame,
    handshake,
    is_upgrade,
    offered_subprotocols,
    read_frame,
)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"abcd") -> bytes:
    """A frame as a client sends it (masked)."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse the unmasked frames a server wrote."""
    out = []
    stream = io.BytesIO(data)
    while head := stream.read(2):
        opcode, size = head[0] & 0x0F, head[1] & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", stream.read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", stream.read(8))
        out.append((opcode, stream.read(size)))
    return out


def test_the_accept_key_is_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    head = handshake("dGhlIHNhbXBsZSBub25jZQ==", "event-protocol-v1").decode()
    assert head.startswith("HTTP/1.1 101 ") and head.endswith("\r\n\r\n")
    assert "Sec-WebSocket-Protocol: event-protocol-v1" in head


def test_upgrades_and_subprotocols_are_recognised() -> None:
    assert is_upgrade({"Upgrade": "WebSocket", "Sec-WebSocket-Key": "x"})
    assert not is_upgrade({"Upgrade": "websocket"})
    assert not is_upgrade({})
    offered = {"Sec-WebSocket-Protocol": "a.b.c, event-protocol-v1"}
    assert offered_subprotocols(offered) == ["a.b.c", "event-protocol-v1"]


@given(payload=st.binary(max_size=70_000), mask=st.binary(min_size=4, max_size=4))
def test_any_masked_payload_reads_back(payload: bytes, mask: bytes) -> None:
    frame = client_frame(BINARY, payload, mask=mask)
    assert read_frame(io.BytesIO(frame), 1 << 20) == (True, BINARY, payload)


@given(payload=st.binary(max_size=70_000))
def test_an_encoded_frame_parses_back(payload: bytes) -> None:
    assert server_frames(encode_frame(TEXT, payload)) == [(TEXT, payload)]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (struct.pack("!BB", 0x81, 3) + b"abc", 1002),  # unmasked
        (bytes([0xC1]) + client_frame(TEXT, b"x")[1:], 1002),  # reserved bit
        (client_frame(PING, b"x" * 126), 1002),  # control frame too long
        (client_frame(PING, b"x", fin=False), 1002),  # fragmented control frame
        (client_frame(TEXT, b"x" * 200), 1009),  # over the cap
    ],
)
def test_a_broken_frame_is_a_protocol_error(frame: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        read_frame(io.BytesIO(frame), 100)
    assert caught.value.code == code


def test_fragments_join_pings_are_answered_and_close_is_echoed() -> None:
    incoming = (
        client_frame(TEXT, "hé".encode(), fin=False)
        + client_frame(PING, b"p")
        + client_frame(CONTINUATION, b"llo")
        + client_frame(PONG, b"")
        + client_frame(CLOSE, struct.pack("!H", 1001))
    )
    written = io.BytesIO()
    ws = WebSocket(io.BytesIO(incoming), written)
    assert ws.receive() == "héllo"
    assert ws.receive() is None
    assert ws.close_code == 1001
    assert server_frames(written.getvalue()) == [(PONG, b"p"), (CLOSE, struct.pack("!H", 1001))]


def test_a_cut_connection_ends_receive_quietly() -> None:
    ws = WebSocket(io.BytesIO(client_frame(TEXT, b"hello")[:5]), io.BytesIO())
    assert ws.receive() is None and ws.closed


# --- a real client, over loopback ----------------------------------------------------------------


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        headers = dict(self.headers.items())
        if not is_upgrade(headers):
            self.send_error(400)
            return
        offered = offered_subprotocols(headers)
        chosen = "event-protocol-v1" if "event-protocol-v1" in offered else None
        self.wfile.write(handshake(headers["Sec-WebSocket-Key"], chosen))
        self.wfile.flush()
        ws = WebSocket(self.rfile, self.wfile, max_size=1 << 20)  # type: ignore[arg-type]
        while (message := ws.receive()) is not None:
            if message == "bye":
                ws.close(1000, "bye")
                break
            ws.send_text(message if isinstance(message, str) else f"{len(message)} bytes")
        self.close_connection = True


@contextmanager
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}/v0.5/lens/sessions/lsn-1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_real_client_talks_to_it() -> None:
    with echo_server() as url, connect(url, subprotocols=["event-protocol-v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "event-protocol-v1"
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        big = os.urandom(100_000)
        ws.send(big)
        assert ws.recv(timeout=5) == "100000 bytes"
        ws.send(["frag", "mented"])  # one message in fragments
        assert ws.recv(timeout=5) == "fragmented"
        ws.ping().wait(5)
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
