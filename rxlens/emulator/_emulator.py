"""The :class:`LensEmulator`: a Lens API server on loopback, and the handle tests drive it by."""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

from rxlens.emulator._errors import (
    EmulatorError,
    EmulatorTimeout,
    SessionEnded,
)
from rxlens.emulator._faults import FaultBudget, Faults, MailboxFaults
from rxlens.emulator._lenses import LENSES
from rxlens.emulator._play import play_stream
from rxlens.emulator._registry import Registry, UnknownSessionMode
from rxlens.emulator._server import EmulatorServer, ServerLimits, is_loopback
from rxlens.emulator._sessions import Session, SessionDestroyed, StatusStyle, _Pull
from rxlens.emulator._stats import EmulatorStats, SessionStats
from rxlens.emulator._stream import Replay, StreamConfig

Payload = Mapping[str, Any] | str | bytes


class LensEmulator:
    """A local Archetype AI Lens API server: real HTTP on 127.0.0.1, scripted lenses, faults.

    Use it as a context manager (``with LensEmulator() as emu:``), or call :meth:`start` and
    :meth:`close`. Everything is served under both ``/api`` and ``/v0.5``.

    Settings:

    - ``api_key``: the key clients must send (``Authorization: Bearer``); default a new
      ``emu-<24 hex>`` per emulator. ``api_keys`` adds more valid keys.
    - ``heartbeat_interval`` (5 s): a heartbeat after this long without any frame.
    - ``idle_timeout`` (60 s): ``sse.stream.end`` after this long without a data event.
    - ``log_size`` (10,000): events kept per session for ``Last-Event-ID`` resume.
    - ``replay``: ``"live"`` (a new reader without ``Last-Event-ID`` sees only new events) or
      ``"all"`` (it sees the whole log first).
    - ``unknown_session``: ``"404"`` (JSON ``{"errors": [...]}``) or ``"end"`` (200,
      ``sse.stream.start``, ``sse.stream.end``).
    - ``max_sessions``: running sessions allowed; past it, create answers the capacity error.
    - ``faults``: the global :class:`Faults` (sessions may have their own, which win).
    - ``seed``: makes session ids, reader ids and default session seeds reproducible.
    - ``status_style``: ``"mixed"`` (as observed), ``"plain"``, ``"enum"`` or ``"numeric"``.
    - ``require_auth`` (``True``): ``False`` accepts requests without a key (loopback hosts
      only, for browser demos); ``cors_origin``: the origin browsers may call it from.
    - ``retain_destroyed`` (100) and ``retain_seconds`` (600): destroyed sessions stay readable
      (their log, their counters) until more than that many were destroyed after them or that
      long has passed, and no reader is attached; then they are freed.
    - ``limits``: the server's :class:`ServerLimits` (connections, read timeouts, body size).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        api_keys: Iterable[str] = (),
        heartbeat_interval: float = 5.0,
        idle_timeout: float = 60.0,
        log_size: int = 10_000,
        replay: Replay = "live",
        unknown_session: UnknownSessionMode = "404",
        max_sessions: int | None = None,
        faults: Faults | None = None,
        seed: int | None = None,
        status_style: StatusStyle = "mixed",
        require_auth: bool = True,
        cors_origin: str | None = None,
        retain_destroyed: int = 100,
        retain_seconds: float = 600.0,
        limits: ServerLimits | None = None,
    ) -> None:
        if heartbeat_interval <= 0 or idle_timeout <= 0:
            raise EmulatorError("heartbeat_interval and idle_timeout must be positive")
        if replay not in ("live", "all"):
            raise EmulatorError(f"replay must be 'live' or 'all', got {replay!r}")
        if unknown_session not in ("404", "end"):
            raise EmulatorError(f"unknown_session must be '404' or 'end', got {unknown_session!r}")
        if log_size < 1:
            raise EmulatorError("log_size must be >= 1")
        if not require_auth and not is_loopback(host):
            # Without a key anyone who reaches the socket drives the emulator.
            raise EmulatorError(f"require_auth=False is for loopback only, not host {host!r}")
        self._host = host
        self._requested_port = port
        self._api_key = api_key or "emu-" + secrets.token_hex(12)
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.log_size = log_size
        self.replay: Replay = replay
        self.seed = seed
        self.cors_origin = cors_origin
        self.limits = limits or ServerLimits()
        self._registry = Registry(
            api_keys=(self._api_key, *api_keys),
            stream_config=StreamConfig(heartbeat_interval, idle_timeout, replay, status_style),
            log_size=log_size,
            max_sessions=max_sessions,
            unknown_session=unknown_session,
            faults=faults,
            seed=seed,
            require_auth=require_auth,
            retain_destroyed=retain_destroyed,
            retain_seconds=retain_seconds,
        )
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def max_sessions(self) -> int | None:
        """Running sessions allowed (``None``: no limit); may be changed while serving."""
        return self._registry.max_sessions

    @max_sessions.setter
    def max_sessions(self, value: int | None) -> None:
        self._registry.max_sessions = value

    @property
    def unknown_session(self) -> UnknownSessionMode:
        """How the consumer endpoint answers an unknown session (``"404"`` or ``"end"``)."""
        return self._registry.unknown_session

    @unknown_session.setter
    def unknown_session(self, value: UnknownSessionMode) -> None:
        self._registry.unknown_session = value

    @property
    def status_style(self) -> StatusStyle:
        """How session statuses are spelled on the wire."""
        return self._registry.status_style

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> LensEmulator:
        """Bind the socket and start serving (idempotent); returns ``self``."""
        if self._closed:
            raise EmulatorError("this emulator is closed; create a new one")
        if self._server is not None:
            return self
        server = EmulatorServer(
            (self._host, self._requested_port),
            self._registry,
            limits=self.limits,
            cors_origin=self.cors_origin,
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="rxlens-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: end every connection and thread, release the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._registry.close_sessions()
        server = self._server
        if server is not None:
            server.shutdown()  # stop accepting first, so no connection slips in after abort
            server.abort_all()
            server.server_close()
            server.join_all(timeout=2.0)
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> LensEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the key
        state = "closed" if self._closed else ("serving" if self._server else "not started")
        where = f" {self.base_url}" if self._server and not self._closed else ""
        return f"<LensEmulator {state}{where} sessions={len(self._registry.sessions())}>"

    # --- addresses --------------------------------------------------------------------------

    def _require_server(self) -> EmulatorServer:
        if self._server is None:
            raise EmulatorError("the emulator is not started; use 'with LensEmulator() as emu'")
        return self._server

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self._require_server().server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>``, without an API prefix."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, ``http://127.0.0.1:<port>/api`` (``/v0.5`` works too)."""
        return self.root_url + "/api"

    @property
    def api_key(self) -> str:
        """The API key clients must send."""
        return self._api_key

    @property
    def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <key>"}``."""
        return {"Authorization": f"Bearer {self._api_key}"}

    def consumer_url(self, session_id: str, prefix: str = "/api") -> str:
        """The SSE consumer URL of a session."""
        return f"{self.root_url}{prefix}/lens/sessions/consumer/{session_id}"

    # --- sessions ---------------------------------------------------------------------------

    def create_session(
        self,
        lens: str = "manual",
        *,
        rate: float | None = None,
        seed: int | None = None,
        count: int | None = None,
        options: Mapping[str, Any] | None = None,
        faults: Faults | None = None,
        destroy_when_done: bool = False,
        channel: Literal["sse", "mailbox"] | None = None,
        mailbox_faults: MailboxFaults | None = None,
    ) -> str:
        """Create a running session; returns its id (``lsn-…``).

        ``lens`` is a scripted lens name (``"manual"``, ``"activity-monitor"``, ``"alert"``,
        ``"machine-state"``, ``"embeddings"``) or a registered lens id. ``rate`` is events per
        second (default: the lens's, 1/s; ``0``: only :meth:`step` produces). ``count`` stops
        the lens after that many events (then ``destroy_when_done`` destroys the session).
        ``options`` tune the lens (see :mod:`rxlens.emulator._lenses`), ``seed`` fixes its
        output, ``faults`` are this session's own faults.

        ``channel="mailbox"`` sends the lens's outputs (and :meth:`push`) to the
        ``session.read`` mailbox at the session's ``session_endpoint`` instead of the SSE
        consumer; the session then runs a variant of the lens whose config names a mailbox
        writer, so the lens metadata tells the truth (``"sse"`` likewise; ``None``: whatever
        the lens config names). ``mailbox_faults`` are the session's own
        :class:`MailboxFaults`.
        """
        if channel not in (None, "sse", "mailbox"):
            raise EmulatorError(f"channel must be 'sse' or 'mailbox', got {channel!r}")
        server = self._require_server()
        registry = self._registry
        entry = registry.find_lens(lens) or registry.find_lens(f"lns-emu-{lens}")
        if entry is None:
            raise EmulatorError(f"unknown lens {lens!r}; scripted lenses: {', '.join(LENSES)}")
        if channel is not None:
            entry = registry.lens_for_channel(entry, channel)
        session, _ = registry.create_session(
            entry,
            ws_base=server.ws_base,
            rate=rate,
            seed=seed,
            count=count,
            options=options,
            faults=faults,
            destroy_when_done=destroy_when_done,
            channel=channel,
            mailbox_faults=mailbox_faults,
        )
        return session.session_id

    def _session(self, session_id: str) -> Session:
        return self._registry.session(session_id)

    def push(self, session_id: str, payload: Payload) -> int:
        """Send one event to every reader of a session; returns its event id.

        A mapping is sent as one line of JSON; a ``str``/``bytes`` is sent verbatim (to test
        malformed data). Events go to the session's output channel: the SSE stream, or the
        ``session.read`` mailbox of a mailbox session (the id is then the mailbox's).
        """
        try:
            return self._session(session_id).append(payload, lens_output=True)
        except SessionDestroyed:
            raise SessionEnded(f"session {session_id} is destroyed") from None

    def push_many(self, session_id: str, payloads: Iterable[Payload]) -> list[int]:
        """:meth:`push` each payload in order; returns the ids."""
        return [self.push(session_id, p) for p in payloads]

    def step(self, session_id: str, n: int = 1) -> list[int]:
        """Make a scripted lens produce its next ``n`` events now (no clock involved)."""
        session = self._session(session_id)
        if session.spec.script is None:
            raise EmulatorError(f"session {session_id} has the manual lens; use push()")
        return session.step(n)

    def play(
        self,
        session_id: str,
        payloads: Iterable[Payload],
        *,
        offsets: Iterable[float] | None = None,
        speed: float | None = 1.0,
        destroy_when_done: bool = False,
    ) -> None:
        """Play a list of events into a session.

        With ``offsets`` (seconds from the start, one per payload) and a ``speed``, each event
        is sent at ``offset / speed`` (``speed=2.0``: twice as fast). Without offsets, or with
        ``speed=None``, events go out as fast as the readers take them: each reader that
        reaches the end of the log pulls the next batch in, so nothing is produced before a
        reader asks and the log never overruns a single reader. ``destroy_when_done`` destroys
        the session after the last event (its readers then get ``sse.stream.end``).
        """
        session = self._session(session_id)
        if session.destroyed:
            raise SessionEnded(f"session {session_id} is destroyed")
        if offsets is None or speed is None or math.isinf(speed):
            with session.cond:
                session.pull = _Pull(iter(payloads), destroy_when_done)
                session.cond.notify_all()
            return
        if speed <= 0:
            raise EmulatorError("speed must be positive")
        timeline = iter(zip(offsets, payloads, strict=False))
        start = time.monotonic()
        pending: list[tuple[float, Payload]] = []

        def job(due: float) -> float | None:
            if session.destroyed:
                return None
            now = time.monotonic()
            while True:
                if not pending:
                    item = next(timeline, None)
                    if item is None:
                        if destroy_when_done:
                            session.destroy()
                        return None
                    pending.append((start + float(item[0]) / speed, item[1]))
                at, payload = pending[0]
                if at > now:
                    return at
                pending.clear()
                try:
                    session.append(payload)
                except SessionDestroyed:
                    return None

        self._registry.ticker.schedule(start, job)

    def destroy(self, session_id: str) -> None:
        """Destroy a session: its open streams end with ``sse.stream.end``."""
        self._session(session_id).destroy()

    def events(self, session_id: str) -> list[tuple[int, Any]]:
        """The events still in a session's log: ``(id, payload)``, decoded when JSON."""
        return self._logged(session_id, mailbox=False)

    def mailbox_events(self, session_id: str) -> list[tuple[int, Any]]:
        """The messages still in a session's ``session.read`` mailbox: ``(id, payload)``,
        decoded when JSON (what :meth:`events` is for the SSE stream)."""
        return self._logged(session_id, mailbox=True)

    def _logged(self, session_id: str, *, mailbox: bool) -> list[tuple[int, Any]]:
        session = self._session(session_id)
        with session.cond:
            log = session.mailbox_log if mailbox else session.log
            raw = [(i, log.get(i)) for i in range(log.first_id, log.last_id + 1)]
        out: list[tuple[int, Any]] = []
        for event_id, data in raw:
            try:
                out.append((event_id, json.loads(data)))
            except ValueError:
                out.append((event_id, data.decode("utf-8", "replace")))
        return out

    @property
    def session_ids(self) -> list[str]:
        """Every session id, oldest first (destroyed ones included while retained)."""
        return [s.session_id for s in self._registry.sessions()]

    # --- faults -----------------------------------------------------------------------------

    def set_faults(self, faults: Faults | None, session_id: str | None = None) -> None:
        """Set the global faults (``session_id=None``) or one session's (``None`` clears).

        Budgets (``fail_next``, ``drops``, ``stalls``) start afresh. Connections already open
        keep the faults they started with.
        """
        if session_id is None:
            self._registry.set_global_faults(faults)
            return
        session = self._session(session_id)
        with session.cond:
            session.faults = faults
            session.budget = None if faults is None else FaultBudget(faults)

    def set_mailbox_faults(
        self, faults: MailboxFaults | None, session_id: str | None = None
    ) -> None:
        """Set the mailbox faults of every session (``session_id=None``) or of one.

        They apply from the next request of a connection already open.
        """
        if session_id is None:
            self._registry.mailbox_faults = faults
            return
        session = self._session(session_id)
        with session.cond:
            session.mailbox_faults = faults
            session.mailbox_drops = 0

    def mailbox_endpoint(self, session_id: str) -> str:
        """The ``session_endpoint`` (``ws://``) of a session, as its record shows it."""
        return f"{self._require_server().ws_base}/lens/sessions/{session_id}"

    def get_faults(self, session_id: str | None = None) -> Faults | None:
        """The faults set globally, or for one session."""
        if session_id is None:
            return self._registry.global_faults
        return self._session(session_id).faults

    # --- waiting and counters ---------------------------------------------------------------

    def wait_until(
        self,
        session_id: str,
        predicate: Callable[[SessionStats], bool],
        timeout: float = 5.0,
    ) -> SessionStats:
        """Wait until ``predicate(stats)`` holds for a session; returns those stats.

        Raises :class:`EmulatorTimeout` after ``timeout`` seconds.
        """
        session = self._session(session_id)
        deadline = time.monotonic() + timeout
        while True:
            stats = self.session_stats(session_id)
            if predicate(stats):
                return stats
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmulatorTimeout(
                    f"session {session_id}: condition not met within {timeout:g} s ({stats})"
                )
            with session.cond:
                # Attach/detach and new events notify; counters do not, hence the short slice.
                session.cond.wait(min(remaining, 0.01))

    def wait_readers(self, session_id: str, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``n`` readers are attached (``sse.stream.start`` sent)."""
        self.wait_until(session_id, lambda s: s.readers_open >= n, timeout)

    def session_stats(self, session_id: str) -> SessionStats:
        """Counters of one session (readers, connections, headers seen, ...)."""
        session = self._session(session_id)
        budget = session.budget
        return session.snapshot(budget.failures_served if budget else 0)

    @property
    def stats(self) -> EmulatorStats:
        """Counters of the whole emulator."""
        server = self._server
        registry = self._registry
        sessions = registry.sessions()
        failures = registry.failures_served()
        counters = registry.counters()
        return EmulatorStats(
            requests=counters["requests"],
            unauthorized=counters["unauthorized"],
            not_found=counters["not_found"],
            failures_injected=failures,
            connections_accepted=server.accepted if server else 0,
            connections_open=server.open_connections if server else 0,
            readers_open=sum(len(s.readers) for s in sessions),
            sessions=len(sessions),
            sessions_running=sum(1 for s in sessions if not s.destroyed),
        )

    # --- drawn streams ----------------------------------------------------------------------

    def play_stream(
        self,
        session_id: str,
        timed_events: Iterable[tuple[float, Any]],
        *,
        speed: float | None = None,
        destroy_when_done: bool | None = None,
    ) -> list[Any]:
        """Play a timed stream of Lens events (drawn or recorded) into a session.

        ``timed_events`` are ``(seconds, LensEvent)`` pairs, such as
        :func:`rxlens.testing.strategies.lens_streams` draws; only their data events are sent
        (this server makes its own start, heartbeat and end frames). Returns the events sent.
        ``rxlens.testing.play_stream(emulator, ...)`` is the same.
        """
        return list(
            play_stream(
                self, session_id, timed_events, speed=speed, destroy_when_done=destroy_when_done
            )
        )
