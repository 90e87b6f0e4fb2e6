"""The emulator's state: lenses, sessions, files, keys, counters, id makers and fault budgets.

Two faces read and change this state: :class:`~rxlens.emulator.LensEmulator` (the handle tests
drive) and the HTTP handler (what clients drive). Both go through one :class:`Registry`, so
neither reaches into the other, the handler can be tested against a registry alone, and every
rule (which key is valid, when a session is freed, which lens a registered config runs) has one
home.
"""

from __future__ import annotations

import hmac
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rxlens.emulator._errors import CAPACITY_MESSAGE, CapacityError, EmulatorError, UnknownSession
from rxlens.emulator._faults import (
    NO_FAULTS,
    NO_MAILBOX_FAULTS,
    ConnectionPlan,
    FaultBudget,
    Faults,
    MailboxFaults,
)
from rxlens.emulator._lenses import LENSES, LensSpec
from rxlens.emulator._sessions import SSE_WRITERS, Session, StatusStyle
from rxlens.emulator._stream import StreamConfig
from rxlens.emulator._ticker import Ticker

UnknownSessionMode = Literal["404", "end"]

#: The scripted lens a lens registered through the API runs when its config names none.
DEFAULT_REGISTERED_LENS = "activity-monitor"
#: The writer a mailbox lens names in its ``output_streams`` (any writer that is not an SSE
#: writer sends a lens's outputs to the ``session.read`` mailbox).
MAILBOX_WRITER = "mailbox_writer"
#: Files kept by the emulated files API, and their total size: a demo's few CSVs, not a store.
MAX_FILES = 256
MAX_FILE_BYTES_TOTAL = 64 * 1024 * 1024


class BadConfig(EmulatorError, ValueError):
    """A lens config or event the emulator cannot run (answered with 400 over HTTP)."""


@dataclass(slots=True)
class Lens:
    """A lens: a built-in scripted one, or one registered (or cloned) through the API."""

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
            "emulator_lens": self.spec.name,
        }

    def model_parameters(self) -> dict[str, Any]:
        """``model_parameters`` of the config (top level or under ``lens_config``)."""
        for holder in (self.config, self.config.get("lens_config")):
            if isinstance(holder, Mapping) and isinstance(holder.get("model_parameters"), Mapping):
                return dict(holder["model_parameters"])
        return {}


@dataclass(slots=True)
class StoredFile:
    """One file uploaded through the emulated files API (kept in memory)."""

    file_id: str
    data: bytes
    content_type: str
    uploaded_at: float = field(default_factory=time.time)

    def record(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_name": self.file_id,
            "file_type": self.content_type,
            "file_size_bytes": len(self.data),
            "num_bytes": len(self.data),
            "file_status": "FILE_STATUS_UPLOADED",
            "upload_timestamp": self.uploaded_at,
            "is_valid": True,
        }


def builtin_config(spec: LensSpec) -> dict[str, Any]:
    """The config a built-in scripted lens shows in ``/lens/metadata``."""
    return {
        "lens_name": spec.name,
        "lens_description": spec.description,
        "model_pipeline": [{"processor_name": "lens_emulator_processor", "processor_config": {}}],
        "output_streams": [{"stream_type": "server_sent_events_writer"}],
    }


def scripted_lens_for(config: Mapping[str, Any]) -> LensSpec:
    """The scripted lens a registered config runs: ``emulator_lens``, else a scripted lens
    whose name is ``lens_name``, else :data:`DEFAULT_REGISTERED_LENS`.

    Raises:
        BadConfig: ``emulator_lens`` names no scripted lens.
    """
    chosen = config.get("emulator_lens")
    if chosen is not None:
        if not isinstance(chosen, str) or chosen not in LENSES:
            raise BadConfig(
                f"unknown emulator_lens {chosen!r}; scripted lenses: {', '.join(LENSES)}"
            )
        return LENSES[chosen]
    name = config.get("lens_name")
    if isinstance(name, str) and name in LENSES:
        return LENSES[name]
    return LENSES[DEFAULT_REGISTERED_LENS]


class Registry:
    """Everything the emulator knows, behind one lock, with no HTTP and no lifecycle."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str],
        stream_config: StreamConfig,
        log_size: int,
        max_sessions: int | None,
        unknown_session: UnknownSessionMode,
        faults: Faults | None,
        seed: int | None,
        require_auth: bool = True,
        retain_destroyed: int = 100,
        retain_seconds: float = 600.0,
    ) -> None:
        if retain_destroyed < 0 or retain_seconds < 0:
            raise EmulatorError("retain_destroyed and retain_seconds must be >= 0")
        self.keys = tuple(api_keys)
        self.require_auth = require_auth
        self.stream_config = stream_config
        self.log_size = log_size
        self.max_sessions = max_sessions
        self.unknown_session: UnknownSessionMode = unknown_session
        self.retain_destroyed = retain_destroyed
        self.retain_seconds = retain_seconds
        self.closing = threading.Event()
        self.ticker = Ticker()
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._lenses: dict[str, Lens] = {}
        self._files: dict[str, StoredFile] = {}
        for spec in LENSES.values():
            lens_id = f"lns-emu-{spec.name}"
            self._lenses[lens_id] = Lens(lens_id, spec.name, builtin_config(spec), spec, True)
        self._global_faults = faults
        self._global_budget = FaultBudget(faults or NO_FAULTS)
        self._counters = {"requests": 0, "unauthorized": 0, "not_found": 0}
        #: The mailbox faults of every session that has none of its own.
        self.mailbox_faults: MailboxFaults | None = None

    @property
    def status_style(self) -> StatusStyle:
        return self.stream_config.status_style

    # --- keys, counters and ids ---------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header value carries a valid key."""
        if not self.require_auth:
            return True
        scheme, _, key = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return False
        given = key.strip().encode()
        # Compare against every key without stopping early: timing says nothing about a key.
        found = False
        for valid in self.keys:
            found |= hmac.compare_digest(given, valid.encode())
        return found

    def count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def _hex(self, n: int) -> str:
        return f"{self._rng.getrandbits(4 * n):0{n}x}"

    def new_reader_id(self) -> str:
        with self._lock:
            return self._hex(16)

    def new_error_uid(self) -> str:
        with self._lock:
            return "err-" + self._hex(12)

    # --- lenses -----------------------------------------------------------------------------

    def find_lens(self, lens_id: str) -> Lens | None:
        with self._lock:
            lens = self._lenses.get(lens_id)
        return None if lens is None or lens.deleted else lens

    def lenses(self) -> list[Lens]:
        with self._lock:
            return [lens for lens in self._lenses.values() if not lens.deleted]

    def register_lens(self, config: Mapping[str, Any]) -> Lens:
        """Register a lens config; raises :class:`BadConfig` for an unknown ``emulator_lens``."""
        spec = scripted_lens_for(config)
        name = str(config.get("lens_name") or "custom-lens")
        with self._lock:
            lens = Lens("lns-" + self._hex(16), name, dict(config), spec)
            self._lenses[lens.lens_id] = lens
        return lens

    def clone_lens(self, lens: Lens) -> Lens:
        with self._lock:
            clone = Lens("lns-" + self._hex(16), lens.name, dict(lens.config), lens.spec)
            self._lenses[clone.lens_id] = clone
        return clone

    def modify_lens(self, lens: Lens, params: Mapping[str, Any]) -> Lens:
        """Merge ``params`` into a lens config (``emulator_lens`` may switch its script)."""
        config = {**lens.config, **params}
        spec = scripted_lens_for(config) if "emulator_lens" in params else lens.spec
        with self._lock:
            lens.config = config
            lens.spec = spec
        return lens

    def lens_for_channel(self, lens: Lens, channel: Literal["sse", "mailbox"]) -> Lens:
        """``lens``, or its variant whose config writes to ``channel`` (made once, then kept),
        so that ``/lens/metadata`` names the writer the session really uses."""
        writer = "server_sent_events_writer" if channel == "sse" else MAILBOX_WRITER
        streams = lens.config.get("output_streams")
        if streams == [{"stream_type": writer}]:
            return lens
        variant_id = f"{lens.lens_id}-{channel}"
        with self._lock:
            variant = self._lenses.get(variant_id)
            if variant is None or variant.deleted:
                config = {**lens.config, "output_streams": [{"stream_type": writer}]}
                variant = Lens(variant_id, lens.name, config, lens.spec, lens.builtin)
                self._lenses[variant_id] = variant
            return variant

    def delete_lens(self, lens_id: str) -> Lens | None:
        with self._lock:
            lens = self._lenses.get(lens_id)
            if lens is None or lens.deleted:
                return None
            lens.deleted = True
            return lens

    # --- sessions -----------------------------------------------------------------------------

    def find_session(self, session_id: object) -> Session | None:
        if not isinstance(session_id, str):
            return None
        with self._lock:
            return self._sessions.get(session_id)

    def session(self, session_id: str) -> Session:
        """The session with this id; raises :class:`UnknownSession`."""
        session = self.find_session(session_id)
        if session is None:
            raise UnknownSession(f"no session {session_id!r}")
        return session

    def sessions(self) -> list[Session]:
        """Every session kept (running, and destroyed ones not yet freed), oldest first."""
        self.free_destroyed()
        with self._lock:
            return list(self._sessions.values())

    def create_session(
        self,
        lens: Lens,
        *,
        ws_base: str,
        rate: float | None = None,
        seed: int | None = None,
        count: int | None = None,
        options: Mapping[str, Any] | None = None,
        faults: Faults | None = None,
        destroy_when_done: bool = False,
        channel: Literal["sse", "mailbox"] | None = None,
        mailbox_faults: MailboxFaults | None = None,
    ) -> tuple[Session, dict[str, Any]]:
        """Create and start a session; returns it and its create-time record.

        ``channel`` overrides the output channel the lens config names (as an
        ``output_stream.set`` right after the create would).

        Raises:
            EmulatorError: a negative ``rate``.
            CapacityError: ``max_sessions`` sessions are running.
        """
        spec = lens.spec
        rate = spec.default_rate if rate is None else rate
        if rate < 0:
            raise EmulatorError("rate must be >= 0")
        opts = dict(options or {})
        if rate > 0:
            opts.setdefault("period", 1.0 / rate)
        self.free_destroyed()
        with self._lock:
            # Checked under the lock so concurrent creates cannot overshoot the limit.
            running = sum(1 for s in self._sessions.values() if not s.destroyed)
            if self.max_sessions is not None and running >= self.max_sessions:
                raise CapacityError(CAPACITY_MESSAGE)
            session_seed = seed if seed is not None else self._rng.getrandbits(32)
            session = Session(
                session_id="lsn-" + self._hex(16),
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
                settings=lens.model_parameters(),
                mailbox_faults=mailbox_faults,
            )
            for stream in lens.config.get("output_streams") or []:
                if isinstance(stream, dict) and stream.get("stream_type"):
                    session.output_to_sse = stream["stream_type"] in SSE_WRITERS
            if channel is not None:
                session.output_to_sse = channel == "sse"
            self._sessions[session.session_id] = session
        # The create response shows the session as registered; it runs from then on.
        record = session.record(self.status_style, ws_base, context="create")
        session.set_status("RUNNING")
        if spec.script is not None and rate > 0:
            period = 1.0 / rate

            def job(due: float) -> float | None:
                if session.destroyed or self.closing.is_set():
                    return None
                session.step(1)
                if session.destroyed or session.done:
                    return None
                return due + period

            self.ticker.schedule(time.monotonic() + period, job)
        return session, record

    def free_destroyed(self) -> None:
        """Forget destroyed sessions past the retention (count and age) with no reader left.

        A destroyed session stays a while so a resuming reader still gets its log and its
        ``sse.stream.end``, and its counters stay readable; after that its log is memory no
        one can reach.
        """
        now = time.monotonic()
        with self._lock:
            ended = [
                s for s in self._sessions.values() if s.destroyed and s.destroyed_at is not None
            ]
            excess = len(ended) - self.retain_destroyed
            for position, session in enumerate(ended):  # oldest first
                too_many = position < excess
                too_old = now - (session.destroyed_at or now) > self.retain_seconds
                if (too_many or too_old) and not session.readers:
                    del self._sessions[session.session_id]

    def close_sessions(self) -> None:
        """Wake every reader thread (the emulator is closing)."""
        self.closing.set()
        self.ticker.close()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            with session.cond:
                session.cond.notify_all()

    # --- files ------------------------------------------------------------------------------

    def store_file(self, name: str, data: bytes, content_type: str) -> StoredFile:
        """Keep an uploaded file (the oldest go first past the count or size bound)."""
        with self._lock:
            self._files.pop(name, None)
            stored = StoredFile(name, data, content_type)
            self._files[name] = stored
            while len(self._files) > MAX_FILES or (
                len(self._files) > 1
                and sum(len(f.data) for f in self._files.values()) > MAX_FILE_BYTES_TOTAL
            ):
                del self._files[next(iter(self._files))]
        return stored

    def find_file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def files(self) -> list[StoredFile]:
        """Every file kept, newest first."""
        with self._lock:
            return list(reversed(self._files.values()))

    def delete_file(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.pop(file_id, None)

    # --- faults -----------------------------------------------------------------------------

    @property
    def global_faults(self) -> Faults | None:
        return self._global_faults

    def set_global_faults(self, faults: Faults | None) -> None:
        self._global_faults = faults
        self._global_budget = FaultBudget(faults or NO_FAULTS)

    def mailbox_faults_for(self, session: Session) -> MailboxFaults:
        return session.mailbox_faults or self.mailbox_faults or NO_MAILBOX_FAULTS

    def budget_for(self, session: Session | None) -> FaultBudget:
        if session is not None and session.budget is not None:
            return session.budget
        return self._global_budget

    def faults_for(self, session: Session | None) -> Faults:
        return self.budget_for(session).faults

    def take_failure(self, session: Session | None) -> tuple[int, float | None] | None:
        return self.budget_for(session).take_failure()

    def plan_for(self, session: Session, connection: int) -> ConnectionPlan:
        # The connection's generator depends on the session's seed and the connection number
        # only, so a seeded run injects the same faults at the same places.
        rng = random.Random(f"{session.seed}:{connection}")
        return self.budget_for(session).plan(rng)

    def failures_served(self) -> int:
        with self._lock:
            sessions = list(self._sessions.values())
        return self._global_budget.failures_served + sum(
            s.budget.failures_served for s in sessions if s.budget is not None
        )
