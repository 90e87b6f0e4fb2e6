"""A scripted ``session.read`` mailbox on 127.0.0.1 for the mailbox source's tests.

It keeps one message log and a read position per ``client_id``, as the Lens server does, and can
misbehave on purpose: each reply shape the sources disagree on, a stray reply before the real
one, a connection dropped after the server advanced a cursor but before it answered (the lost
batch), silence, and a key check on the upgrade.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

Shape = Literal["messages", "list", "single", "timestamp"]


def result(n: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"result {n}"]}}


@dataclass
class MailboxServer:
    key: str = "test-key"
    batch: int = 3
    shape: Shape = "messages"
    status: str = "SESSION_STATUS_RUNNING"
    stray_replies: bool = False
    drop_in_flight: int = 0  # how many reads advance the cursor and then drop the connection
    silent: bool = False  # never answer (a blocked recv)
    error_reply: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v0.5/lens/sessions/lsn-mailbox"

    def add(self, count: int) -> None:
        with self.lock:
            start = len(self.log)
            self.log.extend(result(start + i + 1) for i in range(count))

    # --- the server side ----------------------------------------------------------------------

    def check_key(self, connection: ServerConnection, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        bearer = f"authenticationauthorization.bearer.{self.key}"
        if header == f"Bearer {self.key}" or bearer in offered:
            return None
        body = json.dumps({"errors": [{"code": "unauthorized"}]}).encode()
        return Response(401, "Unauthorized", Headers({"Content-Type": "application/json"}), body)

    def pick(self, connection: ServerConnection, offered: Any) -> Any:
        return "event-protocol-v1" if "event-protocol-v1" in offered else None

    def handle(self, ws: ServerConnection) -> None:
        with self.lock:
            self.connections += 1
        for frame in ws:
            request = json.loads(frame)
            with self.lock:
                self.requests.append(request)
            if self.silent:
                continue
            kind = request.get("type")
            if self.error_reply is not None:
                ws.send(json.dumps({"type": "error", "message": self.error_reply}))
                continue
            if self.stray_replies:
                ws.send(json.dumps({"type": "session.heartbeat.response", "event_data": None}))
            if kind == "session.status":
                ws.send(json.dumps({"session_id": "lsn-mailbox", "session_status": self.status}))
            elif kind == "session.read":
                client_id = request["event_data"]["client_id"]
                with self.lock:
                    start = self.positions.get(client_id, 0)
                    taken = self.log[start : start + self.batch]
                    self.positions[client_id] = start + len(taken)
                    drop = bool(taken) and self.drop_in_flight > 0
                    if drop:
                        self.drop_in_flight -= 1
                if drop:
                    ws.close(1011, "going away mid-read")
                    return
                reply = {"type": "session.read.response", "event_data": self.shaped(taken)}
                ws.send(json.dumps(reply))
            else:
                ws.send(json.dumps({"type": f"{kind}.response", "event_data": None}))

    def shaped(self, taken: list[dict[str, Any]]) -> Any:
        if not taken:
            return None
        if self.shape == "messages":
            return {"messages": taken}
        if self.shape == "list":
            return taken
        if self.shape == "single":
            return taken[0]  # the server sends one message per reply in this shape
        return [
            {"type": m["type"], "timestamp": 1.5, "data": m["event_data"]} for m in taken
        ]


@contextmanager
def mailbox_server(**options: Any) -> Iterator[MailboxServer]:
    state = MailboxServer(**options)
    if state.shape == "single":
        state.batch = 1
    server: Server = serve(
        state.handle,
        "127.0.0.1",
        0,
        process_request=state.check_key,
        select_subprotocol=state.pick,
        compression=None,
    )
    state.port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        thread.join(5)
