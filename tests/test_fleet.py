"""Fleets: the cursor store on its own, and a fleet on Ray that loses and repeats nothing when its
workers are killed mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxlens.emulator import Faults, LensEmulator
from rxlens.errors import ConfigurationError, FleetTimeout
from rxlens.fleet import Record, Secret, SqliteCursors, attach, run_fleet, worker_of
from rxlens.operators import only_results

# --- the store, without Ray ----------------------------------------------------------------------


def test_a_commit_stores_results_and_moves_the_cursor_together(tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    store.assign("lsn-a", 0)
    assert store.started("lsn-a") == ""
    assert store.commit("lsn-a", [Record("1", '{"n":1}'), Record("2", '{"n":2}')], "2") == 2
    assert store.cursor("lsn-a") == "2"
    assert store.results("lsn-a") == [("1", '{"n":1}'), ("2", '{"n":2}')]
    (row,) = store.sessions()
    assert (row.events, row.duplicates, row.state, row.guarantee) == (
        2, 0, "reading", "exactly-once"
    )


def test_an_id_already_stored_is_refused_and_counted(tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    store.assign("lsn-a", 0)
    store.commit("lsn-a", [Record("1", "{}"), Record("2", "{}")], "2")
    assert store.commit("lsn-a", [Record("2", "{}"), Record("3", "{}")], "3") == 1
    assert [i for i, _ in store.results("lsn-a")] == ["1", "2", "3"]
    assert store.sessions()[0].duplicates == 1


def test_results_without_ids_are_all_kept(tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    store.assign("lsn-a", 0)
    store.commit("lsn-a", [Record(None, "{}"), Record(None, "{}")], None)
    assert len(store.results("lsn-a")) == 2 and store.cursor("lsn-a") == ""


def test_a_failed_commit_leaves_neither_results_nor_cursor(tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    store.assign("lsn-a", 0)
    with pytest.raises(Exception):  # noqa: B017 - any failure inside the transaction
        store.commit("lsn-a", [Record("1", "{}"), Record("2", object())], "2")  # type: ignore[arg-type]
    assert store.results("lsn-a") == [] and store.cursor("lsn-a") == ""


def test_starts_are_counted_as_restarts_and_ended_sessions_leave(tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    for sid in ("lsn-a", "lsn-b"):
        store.assign(sid, 1)
    store.started("lsn-a")
    store.started("lsn-a")
    store.mark("lsn-b", state="completed")
    assert store.assigned(1) == ["lsn-a"]
    assert {r.session_id: r.restarts for r in store.sessions()} == {"lsn-a": 1, "lsn-b": 0}


def test_another_process_sees_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "fleet.db"
    store = SqliteCursors(path)
    store.assign("lsn-a", 0)
    code = (
        "from rxlens.fleet import Record, SqliteCursors\n"
        f"SqliteCursors({str(path)!r}).commit('lsn-a', [Record('7', '{{}}')], '7')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert store.cursor("lsn-a") == "7"


def test_sessions_map_to_workers_the_same_way_everywhere() -> None:
    assert worker_of("lsn-abc", 4) == worker_of("lsn-abc", 4)
    spread = {worker_of(f"lsn-{i}", 4) for i in range(40)}
    assert spread == {0, 1, 2, 3}


def test_the_secret_never_shows() -> None:
    assert "sk-123" not in repr(Secret("sk-123")) and Secret("sk-123").reveal() == "sk-123"


# --- on Ray ---------------------------------------------------------------------------------

ray = pytest.importorskip("ray", reason="the fleet tests need Ray: pip install -e '.[ray]'")

EVENTS = 200
KEY = "emu-fleet-test-key-5b0e7d1c"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray.init(num_cpus=2, include_dashboard=False, namespace="rxlens-test", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def sent_result_ids(emu: LensEmulator, sid: str) -> list[str]:
    return [
        str(event_id)
        for event_id, payload in emu.events(sid)
        if isinstance(payload, dict) and payload.get("type") == "inference.result"
    ]


def wait_for(condition: Any, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def committed(store: SqliteCursors, sid: str) -> int:
    return next((r.events for r in store.sessions() if r.session_id == sid), 0)


def produce(emu: LensEmulator, sids: list[str], n: int) -> threading.Thread:
    """Step every session ``n`` times from a thread, a little at a time, so events keep coming
    while a worker dies and restarts."""

    def run() -> None:
        for _ in range(n // 5):
            for sid in sids:
                emu.step(sid, 5)
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_workers_killed_twice_lose_and_repeat_nothing(ray_cluster: Any, tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    with LensEmulator(api_key=KEY, replay="all", heartbeat_interval=0.5, seed=7) as emu:
        sids = [emu.create_session("machine-state", rate=0, seed=i) for i in range(6)]
        fleet = run_fleet(
            sids,
            store=store,
            pipeline=only_results(),
            num_workers=2,
            base_url=emu.base_url,
            api_key=KEY,
            name="kills",
            namespace="rxlens-test",
        )
        try:
            victim = fleet.actors[0]
            mine = [s for s in sids if worker_of(s, 2) == 0]
            assert mine, "worker 0 holds no session"

            def all_committed(n: int) -> bool:
                return all(committed(store, sid) >= n for sid in sids)

            produce(emu, sids, 50).join()
            wait_for(lambda: all_committed(50), what="50 commits per session")
            first_pid = ray.get(victim.pid.remote())
            feeding = produce(emu, sids, 50)
            ray.kill(victim, no_restart=False)
            # The kill is asynchronous: wait until a call reaches a new process.
            wait_for(lambda: ray.get(victim.pid.remote()) != first_pid, what="restart 1")
            feeding.join()
            wait_for(lambda: all_committed(100), what="100 commits per session")
            second_pid = ray.get(victim.pid.remote())
            feeding = produce(emu, sids, 50)
            os.kill(second_pid, signal.SIGKILL)
            wait_for(lambda: ray.get(victim.pid.remote()) != second_pid, what="restart 2")
            feeding.join()
            produce(emu, sids, EVENTS - 150).join()
            for sid in sids:
                emu.destroy(sid)
            status = fleet.wait(timeout=120)
        finally:
            fleet.stop()
        for sid in sids:
            ids = [event_id for event_id, _ in store.results(sid)]
            assert ids == sent_result_ids(emu, sid), f"{sid}: committed ids differ from sent"
            assert len(ids) == EVENTS
    rows = {r.session_id: r for r in status.sessions}
    assert all(r.state == "completed" and r.guarantee == "exactly-once" for r in rows.values())
    assert all(r.duplicates == 0 for r in rows.values())
    assert {s: rows[s].restarts for s in mine} == {s: 2 for s in mine}
    assert all(rows[s].restarts == 0 for s in sids if s not in mine)


@pytest.mark.slow
def test_a_server_without_ids_is_reported_at_least_once(ray_cluster: Any, tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    with LensEmulator(api_key=KEY, replay="all", faults=Faults(ids=False), seed=3) as emu:
        sids = [
            emu.create_session("machine-state", rate=50, count=20, seed=i, destroy_when_done=True)
            for i in range(2)
        ]
        fleet = run_fleet(
            sids,
            store=store,
            pipeline=only_results(),
            num_workers=1,
            base_url=emu.base_url,
            api_key=KEY,
            name="noids",
            namespace="rxlens-test",
        )
        try:
            status = fleet.wait(timeout=60)
        finally:
            fleet.stop()
    for row in status.sessions:
        assert row.guarantee == "at-least-once" and "without event ids" in row.note
        assert row.events == 20


@pytest.mark.slow
def test_the_key_reaches_workers_but_no_ray_log(ray_cluster: Any, tmp_path: Path) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    with LensEmulator(api_key=KEY, replay="all", seed=5) as emu:
        sid = emu.create_session("machine-state", rate=50, count=10, destroy_when_done=True)
        fleet = run_fleet(
            [sid], store=store, num_workers=1, base_url=emu.base_url, api_key=KEY,
            name="secret", namespace="rxlens-test",
        )
        try:
            fleet.wait(timeout=60)
        finally:
            fleet.stop()
    assert committed(store, sid) > 0  # the worker authenticated with the key
    logs = Path("/tmp/ray/session_latest/logs")  # Ray's default temporary folder
    assert logs.is_dir() and any(logs.iterdir())
    leaks = [
        path.name
        for path in logs.rglob("*")
        if path.is_file() and KEY.encode() in path.read_bytes()
    ]
    assert leaks == []


@pytest.mark.slow
def test_a_detached_fleet_is_attached_again_and_takes_more_sessions(
    ray_cluster: Any, tmp_path: Path
) -> None:
    store = SqliteCursors(tmp_path / "fleet.db")
    with LensEmulator(api_key=KEY, replay="all", seed=9) as emu:
        first = emu.create_session("machine-state", rate=50, count=15, destroy_when_done=True)
        later = emu.create_session("machine-state", rate=50, count=15, destroy_when_done=True)
        started = run_fleet(
            [first], store=store, num_workers=2, base_url=emu.base_url, api_key=KEY,
            pipeline=only_results(), name="attach", namespace="rxlens-test", detached=True,
            io="asyncio",
        )
        # Another handle, found by name alone (as another process or a restarted driver would).
        fleet = attach("attach", store=store, num_workers=2, namespace="rxlens-test")
        try:
            assert fleet.pids() == started.pids()
            fleet.add([later])
            status = fleet.wait(timeout=60)
        finally:
            fleet.stop()
        for sid in (first, later):
            assert [i for i, _ in store.results(sid)] == sent_result_ids(emu, sid)
    assert {r.session_id for r in status.sessions} == {first, later}
    assert all(r.state == "completed" and r.events == 15 for r in status.sessions)


def test_a_fleet_needs_a_worker(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        run_fleet([], store=SqliteCursors(tmp_path / "f.db"), num_workers=0)


def test_waiting_too_long_names_the_pending_sessions() -> None:
    error = FleetTimeout(["lsn-a", "lsn-b"], 1.5)
    assert error.pending == ["lsn-a", "lsn-b"] and "lsn-a" in str(error)
