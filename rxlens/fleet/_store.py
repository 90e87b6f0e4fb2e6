"""Where a fleet keeps what it has committed: results and cursors, written in one transaction.

Exactly once across crashes rests on one rule: a result and the cursor that follows it are stored
together or not at all. A worker that dies between the two would otherwise either lose the
result (cursor first) or receive it again after its restart (result first). SQLite gives the
one transaction for free, and it is also where the fleet keeps which worker reads which session,
so a restarted worker finds its sessions and their cursors without any state of its own.

The store is a file: every process of a fleet on one machine opens it (WAL mode, so readers never
block the writer). A fleet that spans machines needs a store every node reaches (a shared
Postgres or Redis): any object with the methods of :class:`CursorStore` will do.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Guarantee = Literal["exactly-once", "at-least-once"]
SessionState = Literal["assigned", "reading", "completed", "failed", "stopped"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    worker INTEGER NOT NULL,
    cursor TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'assigned',
    guarantee TEXT NOT NULL DEFAULT 'exactly-once',
    events INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    starts INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS results (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT,
    record TEXT NOT NULL,
    committed REAL NOT NULL,
    PRIMARY KEY (session_id, seq),
    UNIQUE (session_id, event_id)
);
"""


@dataclass(frozen=True)
class Record:
    """One item to commit: its event id (``None`` when the server sent none) and its JSON."""

    event_id: str | None
    record: str


@dataclass(frozen=True)
class SessionRow:
    """What the store knows of one session of the fleet."""

    session_id: str
    worker: int
    cursor: str
    state: SessionState
    guarantee: Guarantee
    events: int
    duplicates: int
    restarts: int
    note: str
    updated: float


class CursorStore(Protocol):
    """What a fleet needs of a store. :class:`SqliteCursors` is the one that ships."""

    def assign(self, session_id: str, worker: int) -> None: ...

    def assigned(self, worker: int) -> list[str]: ...

    def started(self, session_id: str) -> str: ...

    def commit(self, session_id: str, records: Sequence[Record], cursor: str | None) -> int: ...

    def mark(
        self,
        session_id: str,
        *,
        state: SessionState | None = None,
        guarantee: Guarantee | None = None,
        note: str | None = None,
    ) -> None: ...

    def sessions(self) -> list[SessionRow]: ...


class SqliteCursors:
    """The fleet's store in one SQLite file: sessions, cursors and committed results.

    ``commit`` stores a batch of results and moves the session's cursor in one transaction. A
    result whose event id is already stored is refused (counted in ``duplicates``), so a sink
    fed twice stays right: with ids, the store is idempotent on ``(session_id, event_id)``.

    Safe to share between threads of a process and between processes on one machine.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteCursors({str(self.path)!r})"

    def __reduce__(self) -> tuple[type[SqliteCursors], tuple[str]]:
        # Sent to a worker as its path: each process opens its own connection.
        return (SqliteCursors, (str(self.path),))

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def assign(self, session_id: str, worker: int) -> None:
        """Give ``session_id`` to ``worker`` (a session already known keeps its cursor)."""
        db = self._connection()
        db.execute(
            "INSERT INTO sessions (session_id, worker, updated) VALUES (?, ?, ?) "
            "ON CONFLICT(session_id) DO UPDATE SET worker = excluded.worker",
            (session_id, worker, time.time()),
        )

    def assigned(self, worker: int) -> list[str]:
        """The sessions ``worker`` reads that have not ended."""
        rows = self._connection().execute(
            "SELECT session_id FROM sessions WHERE worker = ? "
            "AND state IN ('assigned', 'reading') ORDER BY session_id",
            (worker,),
        )
        return [row[0] for row in rows]

    def started(self, session_id: str) -> str:
        """A worker starts reading ``session_id``: count the start and return the cursor."""
        db = self._connection()
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "UPDATE sessions SET starts = starts + 1, state = 'reading', updated = ? "
                    "WHERE session_id = ?",
                    (time.time(), session_id),
                )
                row = db.execute(
                    "SELECT cursor FROM sessions WHERE session_id = ?", (session_id,)
                ).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return row[0] if row else ""

    def cursor(self, session_id: str) -> str:
        row = self._connection().execute(
            "SELECT cursor FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return row[0] if row else ""

    def commit(self, session_id: str, records: Sequence[Record], cursor: str | None) -> int:
        """Store ``records`` and move the cursor to ``cursor`` (``None``: keep it), atomically.

        Returns how many records were new; the others (an event id already stored) are counted
        as duplicates and not stored again.
        """
        db = self._connection()
        now = time.time()
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                (seq,) = db.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM results WHERE session_id = ?",
                    (session_id,),
                ).fetchone()
                new = 0
                for item in records:
                    inserted = db.execute(
                        "INSERT OR IGNORE INTO results "
                        "(session_id, seq, event_id, record, committed) VALUES (?, ?, ?, ?, ?)",
                        (session_id, seq + 1, item.event_id, item.record, now),
                    ).rowcount
                    seq += inserted
                    new += inserted
                db.execute(
                    "UPDATE sessions SET cursor = COALESCE(?, cursor), events = events + ?, "
                    "duplicates = duplicates + ?, updated = ? WHERE session_id = ?",
                    (cursor, new, len(records) - new, now, session_id),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return new

    def mark(
        self,
        session_id: str,
        *,
        state: SessionState | None = None,
        guarantee: Guarantee | None = None,
        note: str | None = None,
    ) -> None:
        """Record a session's state, its delivery guarantee or a note for people."""
        self._connection().execute(
            "UPDATE sessions SET state = COALESCE(?, state), guarantee = COALESCE(?, guarantee), "
            "note = COALESCE(?, note), updated = ? WHERE session_id = ?",
            (state, guarantee, note, time.time(), session_id),
        )

    def sessions(self) -> list[SessionRow]:
        rows = self._connection().execute(
            "SELECT session_id, worker, cursor, state, guarantee, events, duplicates, starts, "
            "note, updated FROM sessions ORDER BY session_id"
        )
        return [
            SessionRow(sid, worker, cursor, state, guarantee, events, dups, max(0, starts - 1),
                       note, updated)
            for sid, worker, cursor, state, guarantee, events, dups, starts, note, updated in rows
        ]

    def results(self, session_id: str) -> list[tuple[str | None, str]]:
        """The committed ``(event_id, record)`` of a session, in commit order."""
        rows = self._connection().execute(
            "SELECT event_id, record FROM results WHERE session_id = ? ORDER BY seq",
            (session_id,),
        )
        return [(event_id, record) for event_id, record in rows]

    def records(self, session_id: str) -> list[dict[str, object]]:
        """The committed records of a session, decoded."""
        return [json.loads(record) for _id, record in self.results(session_id)]


__all__ = ["CursorStore", "Guarantee", "Record", "SessionRow", "SessionState", "SqliteCursors"]
