"""The driver's side of a fleet: place sessions on Ray actors, watch them, stop them."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rxlens.client import ENV_API_KEY
from rxlens.errors import ConfigurationError, FleetTimeout, MissingDependency
from rxlens.fleet._store import CursorStore, SessionRow
from rxlens.fleet._worker import FleetWorker, Pipeline, Secret

#: Session states after which nothing more is read.
ENDED = frozenset({"completed", "failed", "stopped"})


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependency(
            "rxlens.fleet runs on Ray: pip install 'rxlens[ray]' (or: pip install ray)"
        ) from None
    return ray


def worker_of(session_id: str, workers: int) -> int:
    """The worker a session goes to: stable across runs and processes (CRC-32, not hash())."""
    return zlib.crc32(session_id.encode("utf-8")) % workers


@dataclass(frozen=True)
class FleetStatus:
    """A snapshot of a fleet: one row per session, from the store."""

    sessions: tuple[SessionRow, ...]

    @property
    def done(self) -> bool:
        return all(row.state in ENDED for row in self.sessions)

    @property
    def events(self) -> int:
        return sum(row.events for row in self.sessions)

    def table(self) -> str:
        """The snapshot as a plain-text table, for a terminal or a log."""
        lines = [f"{'session':<24} {'worker':>6} {'state':<10} {'events':>8} {'dups':>5} "
                 f"{'restarts':>8}  guarantee      cursor"]
        for row in self.sessions:
            lines.append(
                f"{row.session_id[:24]:<24} {row.worker:>6} {row.state:<10} {row.events:>8} "
                f"{row.duplicates:>5} {row.restarts:>8}  {row.guarantee:<14} {row.cursor[:20]}"
            )
        return "\n".join(lines)


class Fleet:
    """A handle on a running fleet: :meth:`status`, :meth:`wait`, :meth:`add`, :meth:`stop`.

    The handle holds nothing the fleet needs: :func:`attach` makes a new one from the fleet's
    name and store, from another process or after the driver restarted.
    """

    def __init__(
        self, name: str, namespace: str, store: CursorStore, actors: list[Any]
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.store = store
        self.actors = actors

    def __repr__(self) -> str:
        return f"Fleet({self.name!r}, workers={len(self.actors)})"

    def status(self) -> FleetStatus:
        return FleetStatus(tuple(self.store.sessions()))

    def add(self, session_ids: Iterable[str]) -> None:
        """Start reading more sessions, each on the worker its id maps to."""
        ray = _ray()
        started = []
        for session_id in session_ids:
            index = worker_of(session_id, len(self.actors))
            self.store.assign(session_id, index)
            started.append(self.actors[index].start.remote(session_id))
        ray.get(started)

    def wait(self, timeout: float | None = None, *, poll: float = 0.2) -> FleetStatus:
        """Block until every session completed, failed or was stopped; return the status.

        Raises:
            FleetTimeout: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if status.done:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                pending = [r.session_id for r in status.sessions if r.state not in ENDED]
                raise FleetTimeout(pending, timeout or 0.0)
            time.sleep(poll)

    def pids(self) -> list[int]:
        """The process id of each worker (for operations, and for tests that kill one)."""
        ray = _ray()
        return list(ray.get([actor.pid.remote() for actor in self.actors]))

    def stop(self) -> None:
        """Stop reading and end the workers. Cursors stay: a later fleet resumes from them."""
        ray = _ray()
        for actor in self.actors:
            try:
                ray.get(actor.stop.remote(), timeout=10)
            except Exception:  # a worker that is gone already: nothing to stop
                pass
            ray.kill(actor, no_restart=True)
        self.actors = []


def _actor_name(name: str, index: int) -> str:
    return f"rxlens-{name}-{index}"


def run_fleet(
    session_ids: Iterable[str],
    *,
    store: CursorStore,
    pipeline: Pipeline | None = None,
    num_workers: int = 2,
    base_url: str | None = None,
    api_key: str | None = None,
    events_options: Mapping[str, Any] | None = None,
    name: str = "fleet",
    namespace: str = "rxlens",
    detached: bool = False,
    max_restarts: int = -1,
    io: str = "threads",
) -> Fleet:
    """Read many sessions on ``num_workers`` restartable Ray actors, committing into ``store``.

    Each session goes to one worker (by a CRC-32 of its id); each worker holds one
    :class:`~rxlens.LensClient` and one ``client.events(...)`` subscription per session,
    piped through ``pipeline``; every output is committed to ``store`` together with its
    event id as the session's cursor, in one transaction. A worker that crashes is restarted
    by Ray and resumes every session from its committed cursor: with a server that sends ids,
    each output is committed exactly once. See the README's "Fleets" section for the contract.

    ``ray.init()`` is called (locally, in ``namespace``) if Ray is not running yet. The API key
    (``api_key``, else ``ATAI_API_KEY``) reaches the workers inside their constructor
    arguments, never in an environment variable, a log line or a repr. ``detached=True`` lets
    the fleet outlive this process (see :func:`attach`). ``io`` is each worker's
    ``LensClient(io=...)``: ``"asyncio"`` reads all of a worker's sessions on one I/O thread.

    Raises:
        MissingDependency: Ray is not installed.
        ConfigurationError: ``num_workers`` is below 1.
    """
    if num_workers < 1:
        raise ConfigurationError(f"num_workers must be at least 1, got {num_workers}")
    ray = _ray()
    if not ray.is_initialized():
        ray.init(namespace=namespace, include_dashboard=False, log_to_driver=False)
    key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
    client_options: dict[str, Any] = {"io": io}
    if base_url is not None:
        client_options["base_url"] = base_url
    ids = list(session_ids)
    for session_id in ids:
        store.assign(session_id, worker_of(session_id, num_workers))
    remote = ray.remote(FleetWorker)
    actors = []
    for index in range(num_workers):
        options: dict[str, Any] = {
            "name": _actor_name(name, index),
            "namespace": namespace,
            "max_restarts": max_restarts,
            "max_task_retries": -1,
            "num_cpus": 0,
        }
        if detached:
            options["lifetime"] = "detached"
        actors.append(
            remote.options(**options).remote(
                index, store, pipeline, client_options, Secret(key), events_options
            )
        )
    ray.get([actor.sessions.remote() for actor in actors])  # every worker has started
    return Fleet(name, namespace, store, actors)


def attach(
    name: str, *, store: CursorStore, num_workers: int, namespace: str = "rxlens"
) -> Fleet:
    """A handle on a running (detached) fleet, found by its name."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(namespace=namespace, include_dashboard=False, log_to_driver=False)
    actors = [ray.get_actor(_actor_name(name, i), namespace=namespace) for i in range(num_workers)]
    return Fleet(name, namespace, store, actors)
