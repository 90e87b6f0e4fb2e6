"""``rxlens fleet`` through the real console script: a demo fleet into a store and a JSONL file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="rxlens fleet needs Ray: pip install -e '.[ray]'")


@pytest.mark.slow
def test_a_demo_fleet_commits_every_result_once(tmp_path: Path) -> None:
    store, out = tmp_path / "fleet.db", tmp_path / "results.jsonl"
    exe = shutil.which("rxlens")
    assert exe is not None
    done = subprocess.run(
        [exe, "fleet", "--demo", "2", "--events", "12", "--results-only", "--store", str(store),
         "--jsonl", str(out), "--timeout", "120"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert len(rows) == 2
    assert all(r[2] == "completed" and r[3] == "12" and r[6] == "exactly-once" for r in rows)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 24 and all(r["type"] == "inference.result" for r in records)
    assert "24 committed, 0 refused as duplicates, 0 failed" in done.stderr


def test_sessions_or_demo_but_not_both() -> None:
    exe = shutil.which("rxlens")
    assert exe is not None
    done = subprocess.run([exe, "fleet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "use --demo N" in done.stderr
