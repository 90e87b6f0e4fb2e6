"""The :class:`LensEmulator`: a Lens API server on loopback, and the handle tests drive it by."""

from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from rxlens.emulator._errors import (
    CapacityError,
    EmulatorError,
    EmulatorTimeout,
    SessionEnded,
    UnknownSession,
)
from rxlens.emulator._faults import NO_FAULTS, ConnectionPlan, FaultBudget, Faults
from rxlens.emulator._lenses import LENSES, LensSpec
from rxlens.emulator._server import CAPACITY_MESSAGE, EmulatorServer
from rxlens.emulator._sessions import (
    SSE_WRITERS,
    Session,
    SessionDestroyed,
    StatusStyle,
    _Pull,
)
from rxlens.emulator._stats import EmulatorStats, SessionStats
from rxlens.emulator._stream import Replay, StreamConfig
from rxlens.emulator._ticker import Ticker

Payload = Mapping[str, Any] | str | bytes
UnknownSessionMode = Literal["404", "end"]


@dataclass(slots=True)
class _Lens:
    lens_id: str
    name: str
    config: dict[str, Any]
    spec: LensSpec
    builtin: bool = False
    deleted: bool = field(default=False)

    def record(self) -> dict[str, Any]:
        return {
            "lens_id": self.lens_id,
            "lens_name": self.name,
            "lens_status": "LENS_STATUS_REGISTERED",
            "lens_config": self.config,
        }


def _builtin_config(spec: LensSpec) -> dict[str, Any]:
    return {
        "lens_name": spec.name,
        "lens_description": spec.description,
        "model_pipeline": [{"processor_name": "lens_emulator_processor", "processor_config": {}}],
        "output_streams": [{"stream_type": "server_sent_events_writer"}],
    }


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
    ) -> None:
        if heartbeat_interval <= 0 or idle_timeout <= 0:
            raise EmulatorError("heartbeat_interval and idle_timeout must be positive")
        if replay not in ("live", "all"):
            raise EmulatorError(f"replay must be 'live' or 'all', got {replay!r}")
        if unknown_session not in ("404", "end"):
            raise EmulatorError(f"unknown_session must be '404' or 'end', got {unknown_session!r}")
        if log_size < 1:
            raise EmulatorError("log_size must be >= 1")
        self._host = host
        self._requested_port = port
        self._api_key = api_key or "emu-" + secrets.token_hex(12)
        self._keys = (self._api_key, *api_keys)
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.log_size = log_size
        self.replay: Replay = replay
        self.unknown_session: UnknownSessionMode = unknown_session
        self.max_sessions = max_sessions
        self.status_style: StatusStyle = status_style
        self.seed = seed
        self._stream_config = StreamConfig(heartbeat_interval, idle_timeout, replay, status_style)
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._lenses: dict[str, _Lens] = {}
        for spec in LENSES.values():
            lens_id = f"lns-emu-{spec.name}"
            self._lenses[lens_id] = _Lens(lens_id, spec.name, _builtin_config(spec), spec, True)
        self._global_budget = FaultBudget(faults or NO_FAULTS)
        self._global_faults = faults
        self._counters = {"requests": 0, "unauthorized": 0, "not_found": 0}
        self._closing = threading.Event()
        self._ticker = Ticker()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> LensEmulator:
        """Bind the socket and start serving (idempotent); returns ``self``."""
        if self._closed:
            raise EmulatorError("this emulator is closed; create a new one")
        if self._server is not None:
            return self
        server = EmulatorServer((self._host, self._requested_port), self)
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
        self._closing.set()
        self._ticker.close()
        for session in list(self._sessions.values()):
            with session.cond:
                session.cond.notify_all()
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
        return f"<LensEmulator {state}{where} sessions={len(self._sessions)}>"

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
    def _ws_base(self) -> str:
        return f"ws://{self._host}:{self.port}/api"

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
    ) -> str:
        """Create a running session; returns its id (``lsn-…``).

        ``lens`` is a scripted lens name (``"manual"``, ``"activity-monitor"``, ``"alert"``,
        ``"machine-state"``, ``"embeddings"``) or a registered lens id. ``rate`` is events per
        second (default: the lens's, 1/s; ``0``: only :meth:`step` produces). ``count`` stops
        the lens after that many events (then ``destroy_when_done`` destroys the session).
        ``options`` tune the lens (see :mod:`rxlens.emulator._lenses`), ``seed`` fixes its
        output, ``faults`` are this session's own faults.
        """
        self._require_server()
        entry = self._find_lens(lens) or self._find_lens(f"lns-emu-{lens}")
        if entry is None:
            raise EmulatorError(f"unknown lens {lens!r}; scripted lenses: {', '.join(LENSES)}")
        session, _ = self._create(
            entry,
            rate=rate,
            seed=seed,
            count=count,
            options=options,
            faults=faults,
            destroy_when_done=destroy_when_done,
        )
        return session.session_id

    def _session(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSession(f"no session {session_id!r}") from None

    def push(self, session_id: str, payload: Payload) -> int:
        """Send one event to every reader of a session; returns its event id.

        A mapping is sent as one line of JSON; a ``str``/``bytes`` is sent verbatim (to test
        malformed data). Events go to the stream whatever the session's output channel.
        """
        try:
            return self._session(session_id).append(payload)
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

        self._ticker.schedule(start, job)

    def destroy(self, session_id: str) -> None:
        """Destroy a session: its open streams end with ``sse.stream.end``."""
        self._session(session_id).destroy()

    def events(self, session_id: str) -> list[tuple[int, Any]]:
        """The events still in a session's log: ``(id, payload)``, decoded when JSON."""
        session = self._session(session_id)
        with session.cond:
            log = session.log
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
        """Every session id, oldest first (destroyed ones included)."""
        return list(self._sessions)

    # --- faults -----------------------------------------------------------------------------

    def set_faults(self, faults: Faults | None, session_id: str | None = None) -> None:
        """Set the global faults (``session_id=None``) or one session's (``None`` clears).

        Budgets (``fail_next``, ``drops``, ``stalls``) start afresh. Connections already open
        keep the faults they started with.
        """
        if session_id is None:
            self._global_faults = faults
            self._global_budget = FaultBudget(faults or NO_FAULTS)
            return
        session = self._session(session_id)
        with session.cond:
            session.faults = faults
            session.budget = None if faults is None else FaultBudget(faults)

    def get_faults(self, session_id: str | None = None) -> Faults | None:
        """The faults set globally, or for one session."""
        if session_id is None:
            return self._global_faults
        return self._session(session_id).faults

    def _budget_for(self, session: Session | None) -> FaultBudget:
        if session is not None and session.budget is not None:
            return session.budget
        return self._global_budget

    def _faults_for(self, session: Session | None) -> Faults:
        return self._budget_for(session).faults

    def _take_failure(self, session: Session | None) -> tuple[int, float | None] | None:
        return self._budget_for(session).take_failure()

    def _plan_for(self, session: Session, connection: int) -> ConnectionPlan:
        # The connection's generator depends on the session's seed and the connection number
        # only, so a seeded run injects the same faults at the same places.
        rng = random.Random(f"{session.seed}:{connection}")
        return self._budget_for(session).plan(rng)

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
        sessions = list(self._sessions.values())
        failures = self._global_budget.failures_served + sum(
            s.budget.failures_served for s in sessions if s.budget is not None
        )
        with self._lock:
            counters = dict(self._counters)
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

    # --- used by the HTTP handler -----------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def _hex(self, n: int) -> str:
        return f"{self._rng.getrandbits(4 * n):0{n}x}"

    def _new_reader_id(self) -> str:
        return self._hex(16)

    def _new_error_uid(self) -> str:
        return "err-" + self._hex(12)

    def _find_lens(self, lens_id: str) -> _Lens | None:
        lens = self._lenses.get(lens_id)
        return None if lens is None or lens.deleted else lens

    def _lenses_snapshot(self) -> list[_Lens]:
        with self._lock:
            return [lens for lens in self._lenses.values() if not lens.deleted]

    def _register_lens(self, config: dict[str, Any]) -> _Lens:
        name = str(config.get("lens_name") or "custom-lens")
        script = config.get("emulator_lens", name)
        spec = LENSES.get(str(script), LENSES["manual"])
        with self._lock:
            lens = _Lens("lns-" + self._hex(16), name, dict(config), spec)
            self._lenses[lens.lens_id] = lens
        return lens

    def _delete_lens(self, lens_id: str) -> _Lens | None:
        with self._lock:
            lens = self._lenses.get(lens_id)
            if lens is None or lens.deleted:
                return None
            lens.deleted = True
            return lens

    def _running_sessions(self) -> int:
        return sum(1 for s in list(self._sessions.values()) if not s.destroyed)

    def _create(
        self,
        lens: _Lens,
        *,
        rate: float | None,
        seed: int | None,
        count: int | None,
        options: Mapping[str, Any] | None,
        faults: Faults | None = None,
        destroy_when_done: bool = False,
    ) -> tuple[Session, dict[str, Any]]:
        spec = lens.spec
        rate = spec.default_rate if rate is None else rate
        if rate < 0:
            raise EmulatorError("rate must be >= 0")
        opts = dict(options or {})
        if rate > 0:
            opts.setdefault("period", 1.0 / rate)
        with self._lock:
            # Checked under the lock so concurrent creates cannot overshoot the limit.
            if self.max_sessions is not None and self._running_sessions() >= self.max_sessions:
                raise CapacityError(CAPACITY_MESSAGE)
            session_seed = seed if seed is not None else self._rng.getrandbits(32)
            session_id = "lsn-" + self._hex(16)
            session = Session(
                session_id=session_id,
                lens_id=lens.lens_id,
                spec=spec,
                options=opts,
                rate=rate,
                seed=session_seed,
                log_size=self.log_size,
                count=count,
                destroy_when_done=destroy_when_done,
                faults=faults,
                budget=None if faults is None else FaultBudget(faults),
            )
            for stream in lens.config.get("output_streams") or []:
                if isinstance(stream, dict) and stream.get("stream_type"):
                    session.output_to_sse = stream["stream_type"] in SSE_WRITERS
            self._sessions[session_id] = session
        # The create response shows the session as registered; it runs from then on.
        record = session.record(self.status_style, self._ws_base, context="create")
        session.status = "RUNNING"
        if spec.script is not None and rate > 0:
            period = 1.0 / rate

            def job(due: float) -> float | None:
                if session.destroyed or self._closing.is_set():
                    return None
                session.step(1)
                if session.destroyed or session.done:
                    return None
                return due + period

            self._ticker.schedule(time.monotonic() + period, job)
        return session, record

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
        See :func:`rxlens.testing.play_stream`.
        """
        from rxlens.testing._play import play_stream

        return list(
            play_stream(
                self, session_id, timed_events, speed=speed, destroy_when_done=destroy_when_done
            )
        )
