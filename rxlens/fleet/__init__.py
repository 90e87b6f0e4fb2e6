"""Fleets: many Lens sessions read on restartable Ray actors, exactly once across crashes.

``run_fleet`` places sessions on workers; a :class:`SqliteCursors` store keeps each session's
committed results and cursor together; a crashed worker is restarted by Ray and resumes from the
store. Ray is an optional dependency (``pip install 'rxlens[ray]'``), imported when a fleet
starts; the store works without it.
"""

from __future__ import annotations

from rxlens.errors import FleetTimeout
from rxlens.fleet._fleet import Fleet, FleetStatus, attach, run_fleet, worker_of
from rxlens.fleet._store import CursorStore, Record, SessionRow, SqliteCursors
from rxlens.fleet._worker import FleetWorker, Secret

__all__ = [
    "CursorStore",
    "Fleet",
    "FleetStatus",
    "FleetTimeout",
    "FleetWorker",
    "Record",
    "Secret",
    "SessionRow",
    "SqliteCursors",
    "attach",
    "run_fleet",
    "worker_of",
]
