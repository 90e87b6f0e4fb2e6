"""``rxlens fleet``: read many sessions on Ray workers into a SQLite store, with a live table.

The store keeps every committed result with its session's cursor, so stopping (Ctrl-C) and
running the same command again continues where it stopped, and a worker that crashes is
restarted by Ray and resumes by itself. ``--demo N`` runs N sessions of the embedded emulator,
so the whole thing can be seen without an API key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rxlens.cli._common import add_connection_args, is_tty
from rxlens.client import ENV_API_KEY, ENV_ENDPOINT
from rxlens.errors import ConfigurationError

EXAMPLES = """\
examples:
  rxlens fleet --demo 6                                  # 6 emulator sessions, 2 workers
  rxlens fleet lsn-aaa lsn-bbb --store fleet.db          # real sessions (ATAI_API_KEY)
  rxlens fleet lsn-aaa lsn-bbb --store fleet.db --jsonl results.jsonl --results-only

Needs Ray: pip install 'rxlens[ray]' (from a clone: pip install -e '.[ray]').
Ctrl-C stops the workers; the store keeps every cursor, so the same command continues later.
Exit codes: see 'rxlens --help'.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fleet",
        help="read many sessions on Ray workers into a SQLite store (exactly once)",
        description=(
            "Read many Lens sessions on restartable Ray workers. Every result is committed to a "
            "SQLite store together with its session's cursor, so a crashed worker resumes "
            "without losing or repeating anything."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("session_ids", nargs="*", metavar="SESSION_ID")
    parser.add_argument("--store", default="fleet.db", metavar="FILE", help="SQLite store")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="Ray workers")
    parser.add_argument(
        "--results-only", action="store_true", help="commit inference results only"
    )
    parser.add_argument("--jsonl", metavar="FILE", help="write every committed record here")
    parser.add_argument(
        "--demo", type=int, metavar="N", help="run N sessions of the embedded emulator"
    )
    parser.add_argument(
        "--events", type=int, default=60, metavar="N", help="with --demo: results per session"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="give up after S seconds"
    )
    add_connection_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rxlens.fleet import SqliteCursors, run_fleet
    from rxlens.operators import only_results

    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    if bool(args.demo) == bool(args.session_ids):
        raise ConfigurationError("name SESSION_IDs, or use --demo N (one of the two)")
    store = SqliteCursors(args.store)
    pipeline = only_results() if args.results_only else None
    emulator = None
    base_url: str | None
    api_key: str | None
    if args.demo:
        from rxlens.emulator import LensEmulator

        emulator = LensEmulator(replay="all", heartbeat_interval=1.0).start()
        sessions = [
            emulator.create_session(
                "machine-state", rate=20, count=args.events, seed=i, destroy_when_done=True
            )
            for i in range(args.demo)
        ]
        base_url, api_key = emulator.base_url, emulator.api_key
    else:
        sessions = list(args.session_ids)
        base_url = args.base_url or os.environ.get(ENV_ENDPOINT)
        api_key = args.api_key or os.environ.get(ENV_API_KEY)
    try:
        fleet = run_fleet(
            sessions,
            store=store,
            pipeline=pipeline,
            num_workers=args.workers,
            base_url=base_url,
            api_key=api_key,
            name=f"cli-{os.getpid()}",
        )
        try:
            status = _watch(fleet, args.timeout)
        finally:
            fleet.stop()
        if args.jsonl:
            _export(store, sessions, Path(args.jsonl))
    finally:
        if emulator is not None:
            emulator.close()
    print(status.table())
    failed = [row.session_id for row in status.sessions if row.state == "failed"]
    print(
        f"fleet: {len(status.sessions)} sessions, {status.events} committed, "
        f"{sum(r.duplicates for r in status.sessions)} refused as duplicates, "
        f"{len(failed)} failed; store {args.store}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _watch(fleet: Any, timeout: float | None) -> Any:
    from rxlens.errors import FleetTimeout

    deadline = None if timeout is None else time.monotonic() + timeout
    live = is_tty(sys.stderr)
    last_print = 0.0
    while True:
        status = fleet.status()
        now = time.monotonic()
        if status.done:
            return status
        if deadline is not None and now >= deadline:
            pending = [r.session_id for r in status.sessions if r.state not in ("completed",)]
            raise FleetTimeout(pending, timeout or 0.0)
        if live:
            # Redraw the table in place: move up over the previous one.
            text = status.table()
            sys.stderr.write(text + "\n")
            sys.stderr.write(f"\x1b[{text.count(chr(10)) + 1}A")
            sys.stderr.flush()
        elif now - last_print >= 5.0:
            print(
                f"fleet: {status.events} committed, "
                f"{sum(r.state == 'completed' for r in status.sessions)}/"
                f"{len(status.sessions)} sessions done",
                file=sys.stderr,
            )
            last_print = now
        time.sleep(0.5)


def _export(store: Any, sessions: list[str], path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for session_id in sessions:
            for record in store.records(session_id):
                record.setdefault("session_id", session_id)
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
