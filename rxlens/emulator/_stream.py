"""One SSE connection to a session's consumer endpoint: the frame loop and its faults.

The response is written straight to the socket (each write is one ``sendall``), one HTTP chunk
per write, so every frame leaves as soon as it exists. When a reader is behind (a resume, a
max-speed playback), the frames already waiting are joined into one chunk: the client still
receives each frame without delay, and a throughput run does one system call per batch.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO, Literal

from rxlens.emulator._faults import ConnectionPlan
from rxlens.emulator._frames import control_frame, data_frame, encode_payload
from rxlens.emulator._sessions import Reader, Session, StatusStyle, status_string

Replay = Literal["live", "all"]

#: The most events one fast-path write carries, and the size it stops adding frames at.
_BATCH_EVENTS = 512
_BATCH_BYTES = 64 * 1024
#: How many playback payloads a reader pulls into the log at once.
_PULL_BATCH = 256


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Timing and replay settings shared by every connection of an emulator."""

    heartbeat_interval: float
    idle_timeout: float
    replay: Replay
    status_style: StatusStyle


class _ConnectionOver(Exception):
    """Internal: stop serving this connection (client gone, dropped, emulator closing)."""


class _Writer:
    """Writes the response body: chunked or close-delimited, whole or one byte at a time."""

    def __init__(self, wfile: BinaryIO, *, chunked: bool, drip: bool) -> None:
        self._wfile = wfile
        self._chunked = chunked
        self._drip = drip

    def write(self, data: bytes) -> None:
        if self._drip:
            for i in range(len(data)):
                self._raw(data[i : i + 1])
        else:
            self._raw(data)

    def _raw(self, data: bytes) -> None:
        try:
            if self._chunked:
                self._wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                self._wfile.write(data)
        except OSError as exc:  # the client went away
            raise _ConnectionOver("client_closed") from exc

    def finish(self) -> None:
        if self._chunked:
            with contextlib.suppress(OSError):
                self._wfile.write(b"0\r\n\r\n")


class SseStream:
    """Serves one consumer connection from ``sse.stream.start`` to its end.

    ``closing`` is set when the emulator shuts down; the emulator also shuts the socket down,
    which ends any write in progress.
    """

    def __init__(
        self,
        *,
        wfile: BinaryIO,
        sock: socket.socket,
        session: Session,
        config: StreamConfig,
        plan: ConnectionPlan,
        reader: Reader,
        closing: threading.Event,
        chunked: bool,
    ) -> None:
        self._sock = sock
        self._session = session
        self._config = config
        self._plan = plan
        self._reader = reader
        self._closing = closing
        faults = plan.faults
        self._ids = faults.ids
        self._crlf = faults.crlf
        self._slow = faults.frame_level
        self._writer = _Writer(wfile, chunked=chunked, drip=faults.slow_drip)

    # --- frames -----------------------------------------------------------------------------

    def _control(self, event_type: str, event_data: dict[str, object] | None, **kw: int) -> None:
        self._writer.write(control_frame(event_type, event_data, crlf=self._crlf, **kw))

    def _start_cursor(self) -> tuple[int, str | None]:
        """Where this reader starts (the last id it already has) and any gap notice text."""
        session, log = self._session, self._session.log
        header = self._reader.last_event_id
        requested: int | None = None
        if header is not None:
            try:
                requested = int(header.strip())
            except ValueError:
                requested = None  # not one of ours: served like a reader without an id
        if requested is None:
            if self._config.replay == "live":
                return log.last_id, None
            requested = 0
        cursor = min(max(requested, 0), log.last_id)
        if cursor < log.first_id - 1:
            note = (
                f"events {cursor + 1}..{log.first_id - 1} of session {session.session_id} are "
                f"no longer in the log (it holds {log.capacity}); resuming at {log.first_id}"
            )
            return log.first_id - 1, note
        return cursor, None

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> str:
        """Serve the connection; returns why it ended (see :class:`ReaderStats`)."""
        try:
            return self._run()
        except _ConnectionOver as over:
            return str(over)

    def _run(self) -> str:
        session, log, reader = self._session, self._session.log, self._reader
        interval, idle = self._config.heartbeat_interval, self._config.idle_timeout
        with session.cond:
            cursor, gap_note = self._start_cursor()
        self._control(
            "sse.stream.start",
            {"session_id": session.session_id, "reader_id": reader.reader_id},
            **({"retry_ms": self._plan.faults.retry_ms} if self._plan.faults.retry_ms else {}),
        )
        session.attach(reader)
        if gap_note is not None:
            self._gap(gap_note, cursor)
        started = time.monotonic()
        last_data = last_frame = started
        beats_since_data = 0
        while True:
            batch: list[tuple[int, bytes]] = []
            ended = False
            with session.cond:
                while True:
                    if self._closing.is_set():
                        raise _ConnectionOver("emulator_closed")
                    if log.last_id <= cursor and session.pull is not None:
                        session.pull_more_locked(_PULL_BATCH)
                    if log.last_id > cursor or session.destroyed:
                        break
                    now = time.monotonic()
                    deadline = min(last_frame + interval, last_data + idle)
                    if now >= deadline:
                        break
                    session.cond.wait(deadline - now)
                if cursor < log.first_id - 1:  # the log wrapped past a slow reader
                    gap_from, cursor = cursor, log.first_id - 1
                else:
                    gap_from = None
                stop = min(log.last_id, cursor + (1 if self._slow else _BATCH_EVENTS))
                size = 0
                for event_id in range(cursor + 1, stop + 1):
                    data = log.get(event_id)
                    batch.append((event_id, data))
                    size += len(data)
                    if size >= _BATCH_BYTES:
                        break
                ended = session.destroyed and not batch and log.last_id <= cursor
            if gap_from is not None:
                self._gap(
                    f"events {gap_from + 1}..{cursor} of session {session.session_id} were "
                    f"dropped from the log before this reader got them; resuming at {cursor + 1}",
                    cursor,
                )
            now = time.monotonic()
            if batch:
                self._send(batch)
                cursor = batch[-1][0]
                last_data = last_frame = time.monotonic()
                beats_since_data = 0
                continue
            if ended:
                self._end(started, "session_destroyed")
                return "session_destroyed"
            if now >= last_data + idle:
                self._end(started, "idle_timeout")
                return "idle_timeout"
            if now >= last_frame + interval:
                beats_since_data += 1
                self._control(
                    "sse.stream.heartbeat",
                    {
                        "session_id": session.session_id,
                        "session_status": status_string(session.status, self._config.status_style),
                        "num_messages": reader.events_sent,
                        "num_bytes": reader.bytes_sent,
                        # Grows with each heartbeat, as observed: the idle time so far.
                        "message_timeout": round(beats_since_data * interval, 3),
                    },
                )
                reader.heartbeats_sent += 1
                last_frame = time.monotonic()

    def _gap(self, message: str, resume_after: int) -> None:
        self._control(
            "log.info",
            {
                "session_id": self._session.session_id,
                "message": message,
                "resume_after_id": resume_after,
            },
        )

    def _end(self, started: float, reason: str) -> None:
        reader = self._reader
        self._control(
            "sse.stream.end",
            {
                "session_id": self._session.session_id,
                "num_messages": reader.events_sent,
                "num_bytes": reader.bytes_sent,
                "num_errors": 0,
                "sse_run_time": round(time.monotonic() - started, 3),
                "reason": reason,
            },
        )
        self._writer.finish()

    def _send(self, batch: list[tuple[int, bytes]]) -> None:
        reader = self._reader
        if not self._slow:
            ids, crlf = self._ids, self._crlf
            self._writer.write(
                b"".join(data_frame(i if ids else None, d, crlf=crlf) for i, d in batch)
            )
            reader.events_sent += len(batch)
            reader.bytes_sent += sum(len(d) for _, d in batch)
            return
        plan = self._plan
        for event_id, data in batch:
            sent = reader.events_sent
            if plan.stall_now(sent):
                self._stall()
            if plan.large_now(sent):
                self._writer.write(self._large_frame())
            frame = data_frame(
                event_id if self._ids else None, plan.malform(sent, data), crlf=self._crlf
            )
            if plan.drop_now(sent):
                self._writer.write(frame[: max(1, len(frame) // 2)])
                self._abort()
                raise _ConnectionOver("dropped")
            self._writer.write(frame)
            reader.events_sent += 1
            reader.bytes_sent += len(data)

    def _large_frame(self) -> bytes:
        size = self._plan.faults.large_event_bytes
        filler = "x" * max(1, size - 120)
        payload = {
            "type": "inference.result",
            "event_data": {"response": [filler], "query_metadata": {"size_bytes": size}},
        }
        return data_frame(None, encode_payload(json.dumps(payload)), crlf=self._crlf)

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _stall(self) -> None:
        """Send nothing for ``stall_for`` seconds, or until the client or the emulator closes."""
        seconds = self._plan.faults.stall_for
        deadline = None if seconds is None else time.monotonic() + seconds
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        while True:
            if self._closing.is_set():
                raise _ConnectionOver("emulator_closed")
            timeout_ms: int | None = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                timeout_ms = max(1, int(remaining * 1000))
            if poller.poll(timeout_ms):
                try:
                    peek = self._sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    peek = b""
                if not peek:  # the client hung up, or the emulator shut the socket down
                    raise _ConnectionOver(
                        "emulator_closed" if self._closing.is_set() else "client_closed"
                    )
                time.sleep(0.05)  # the client sent bytes we do not read; do not spin
