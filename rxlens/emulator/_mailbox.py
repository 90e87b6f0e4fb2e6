"""The ``session.read`` mailbox over a session's WebSocket: what the emulator answers, and how
it breaks.

The Lens API's second output channel is a WebSocket at the session's ``session_endpoint``: the
client sends JSON events and gets exactly one ``<type>.response`` per event, ``session.read``
draining the session's mailbox from a position kept per ``client_id``. The framing is in
:mod:`rxlens.emulator._websocket`; this module is the conversation: read positions (kept by the
session), the reply shapes the sources disagree on, and the faults a client must survive,
chiefly the one no client can see coming: the server advanced a reader's position and the
connection died before the reply left (the lost batch).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rxlens.emulator._faults import NO_MAILBOX_FAULTS, MailboxFaults, ReplyShape
from rxlens.emulator._sessions import Session
from rxlens.emulator._websocket import NORMAL, WebSocket

#: Subprotocol prefix that carries the key (browsers cannot set an Authorization header).
AUTH_SUBPROTOCOL = "authenticationauthorization.bearer."
#: The subprotocol echoed back when offered.
EVENT_PROTOCOL = "event-protocol-v1"




def key_from_subprotocols(offered: list[str]) -> str | None:
    """The key carried by an ``authenticationauthorization.bearer.<key>`` subprotocol."""
    for name in offered:
        if name.startswith(AUTH_SUBPROTOCOL):
            return name[len(AUTH_SUBPROTOCOL) :]
    return None


def _decoded(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")  # injected malformed data, kept as text


def read_reply(session: Session, client_id: str, faults: MailboxFaults) -> object:
    """The ``event_data`` of a ``session.read`` reply (``None`` when nothing is queued)."""
    limit = 1 if faults.reply_shape == "envelope" else faults.batch
    messages = [_decoded(data) for data in session.read_mailbox(client_id, limit)]
    if not messages:
        return None
    if faults.reply_shape == "envelope":
        return messages[0]
    if faults.reply_shape == "data":
        messages = [_data_shape(m) for m in messages]
    return {"messages": messages}


def _data_shape(message: Any) -> Any:
    if not isinstance(message, Mapping) or "event_data" not in message:
        return message
    out = {k: v for k, v in message.items() if k != "event_data"}
    out.setdefault("timestamp", time.time())
    out["data"] = message["event_data"]
    return out


#: Answers every event but ``session.read``: ``(session, event) -> reply``; the server's own
#: dispatch, shared with ``POST /lens/sessions/events/process``.
Answer = Callable[[Session, Mapping[str, Any]], dict[str, Any]]


def serve(
    ws: WebSocket,
    sock: socket.socket,
    session: Session,
    faults: Callable[[], MailboxFaults],
    answer: Answer,
    closing: threading.Event,
) -> str:
    """Answer the client's events until it closes; returns why the connection ended.

    ``faults`` is read at each request, so faults set while a client is connected apply to its
    next request.
    """
    delivered = 0
    replies = 0
    while not closing.is_set():
        frame = ws.receive()
        if frame is None:
            return "client_closed"
        try:
            event = json.loads(frame)
        except (ValueError, RecursionError):
            event = None
        active = faults()
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            reply: dict[str, Any] | None = {"type": "error", "message": "Bad event: not JSON"}
        elif event["type"] == "session.read":
            reply, dropped = _read(session, event, active, delivered)
            if dropped:
                # The position moved and the answer never leaves: the lost batch.
                _abort(sock)
                return "dropped"
            data = reply.get("event_data")
            if isinstance(data, Mapping):
                delivered += len(data["messages"]) if "messages" in data else 1
        elif event["type"] == "session.heartbeat" and not active.heartbeat_reply:
            reply = None
        else:
            reply = answer(session, event)
        if reply is None:
            continue
        if active.reply_delay and closing.wait(active.reply_delay):
            break  # the emulator is closing: no reply
        try:
            ws.send_text(json.dumps(reply))
        except OSError:
            return "client_gone"
        replies += 1
        if active.close_after is not None and replies >= active.close_after:
            ws.close(active.close_code, "closed by the emulator's close_after fault")
            return f"closed_{active.close_code}"
    ws.close(1001 if closing.is_set() else NORMAL, "the emulator is closing")
    return "emulator_closing"


def _read(
    session: Session, event: Mapping[str, Any], faults: MailboxFaults, delivered: int
) -> tuple[dict[str, Any], bool]:
    data = event.get("event_data")
    client_id = data.get("client_id") if isinstance(data, Mapping) else None
    if not isinstance(client_id, str) or not client_id:
        return {"type": "error", "message": "session.read needs event_data.client_id"}, False
    body = read_reply(session, client_id, faults)
    reply = {"type": "session.read.response", "event_data": body}
    if body is None or faults.drop_after is None or delivered < faults.drop_after:
        return reply, False
    with session.cond:
        if faults.drops is not None and session.mailbox_drops >= faults.drops:
            return reply, False
        session.mailbox_drops += 1
    return reply, True


def _abort(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


__all__ = [
    "AUTH_SUBPROTOCOL",
    "EVENT_PROTOCOL",
    "NO_MAILBOX_FAULTS",
    "MailboxFaults",
    "ReplyShape",
    "key_from_subprotocols",
    "read_reply",
    "serve",
]
