"""``rxlens tail``, ``record`` and ``replay`` against the emulator on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rxlens.cli import main
from rxlens.emulator import Faults, LensEmulator
from rxlens.recording import read_recording

ENTRY = "import sys; from rxlens.cli import main; sys.exit(main())"


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    monkeypatch.delenv("ATAI_API_ENDPOINT", raising=False)


def conn(emu: LensEmulator) -> list[str]:
    return ["--base-url", emu.base_url, "--api-key", emu.api_key]


def finished_session(emu: LensEmulator, n: int = 20, **faults: object) -> str:
    """A session whose log holds ``n`` results and that is already destroyed at the end."""
    sid = emu.create_session(
        "machine-state", rate=0, seed=3, faults=Faults(**faults) if faults else None
    )
    emu.step(sid, n)
    return sid


@pytest.fixture
def emu() -> LensEmulator:
    with LensEmulator(heartbeat_interval=0.3, replay="all", seed=1) as emulator:
        yield emulator


# --- tail ---------------------------------------------------------------------------------------


def test_tail_prints_each_event_once_and_says_when_it_resumed(
    emu: LensEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = finished_session(emu, 20, drop_after=7, drops=1)
    emu.destroy(sid)
    assert main(["tail", sid, *conn(emu)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    ids = [m.group(1) for m in map(re.compile(r"#(\d+)\s+inference\.result").search, lines) if m]
    assert ids == [str(i) for i in range(1, 21)]  # nothing lost, nothing twice, in order
    assert re.search(r"HEALTHY=\d BROKEN=\d rows 0\+100", out)
    assert "sse.stream.end" in lines[-1]
    assert "connection lost after id 7" in err
    assert re.search(r"resumed after id 7 in \d+\.\d s", err)
    assert "stream ended: 23 events, last id 20" in err  # two starts, 20 results, the end
    assert emu.session_stats(sid).last_event_id == "7"


def test_tail_json_results_only_since_id_and_count(
    emu: LensEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = finished_session(emu, 10)
    args = ["tail", sid, *conn(emu), "--json", "--results-only", "--since-id", "4", "-n", "3"]
    assert main(args) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in records] == ["5", "6", "7"]
    assert {r["type"] for r in records} == {"inference.result"}
    assert records[0]["event_data"]["response"][0] in ("HEALTHY", "BROKEN", "unknown")
    assert emu.session_stats(sid).last_event_id == "4"


def test_tail_follow_reconnects_after_an_idle_end_until_the_session_is_gone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with LensEmulator(heartbeat_interval=0.2, idle_timeout=0.4, replay="all") as emu:
        sid = emu.create_session("manual")
        emu.push(sid, {"type": "inference.result", "event_data": {"response": ["first"]}})

        def later() -> None:
            emu.wait_until(sid, lambda s: s.connections >= 2, timeout=10)
            emu.push(sid, {"type": "inference.result", "event_data": {"response": ["second"]}})
            emu.wait_until(sid, lambda s: s.connections >= 3, timeout=10)
            emu.destroy(sid)

        import threading

        driver = threading.Thread(target=later)
        driver.start()
        try:
            assert main(["tail", sid, *conn(emu), "--follow", "--results-only"]) == 0
        finally:
            driver.join(10)
    out = capsys.readouterr().out
    assert re.findall(r"inference\.result\s+(\w+)", out) == ["first", "second"]


@pytest.mark.parametrize(
    ("make_args", "code", "words"),
    [
        (lambda e, s: ["lsn-nope", *conn(e)], 4, "check the session id"),
        (lambda e, s: [s, "--base-url", e.base_url, "--api-key", "wrong"], 3, "check the API key"),
        (
            lambda e, s: [s, "--base-url", "http://127.0.0.1:9/api", "--api-key", "k"],
            5,
            "check the base URL",
        ),
        (lambda e, s: [s, "--base-url", e.base_url], 3, "ATAI_API_KEY"),
    ],
    ids=["unknown-session", "bad-key", "unreachable", "no-key"],
)
def test_tail_errors_are_one_line_with_their_exit_code(
    emu: LensEmulator,
    capsys: pytest.CaptureFixture[str],
    make_args: object,
    code: int,
    words: str,
) -> None:
    sid = finished_session(emu, 1)
    assert callable(make_args)
    assert main(["tail", *make_args(emu, sid)]) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("rxlens tail: error: ")
    assert words in err
    assert "Traceback" not in err and emu.api_key not in err


def test_debug_shows_the_traceback(emu: LensEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "tail", "lsn-nope", *conn(emu)]) == 4
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_tail_ctrl_c_exits_cleanly_with_a_count(emu: LensEmulator) -> None:
    sid = emu.create_session("machine-state", rate=50, seed=2)
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "tail", sid, *conn(emu), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(5):  # wait until it is streaming
            assert proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert re.search(r"rxlens tail: stopped: \d+ events, last id \d+", err)
    assert "Traceback" not in err


# --- record -------------------------------------------------------------------------------------


def test_record_writes_every_frame_and_append_continues_after_the_last_id(
    emu: LensEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = finished_session(emu, 12, drop_after=5, drops=1)
    path = tmp_path / "run.jsonl"
    assert main(["record", sid, "-o", str(path), *conn(emu), "-n", "9"]) == 0
    first = list(read_recording(path))
    assert [e.type for e in first][:2] == ["sse.stream.start", "inference.result"]
    assert [e.id for e in first if e.id] == [str(i) for i in range(1, 8)]
    assert all(e.received_at > 0 for e in first)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert emu.api_key not in path.read_text()
    # A crash mid-line leaves a torn line; --append cuts it and goes on after id 7.
    with path.open("a") as handle:
        handle.write('{"v":1,"id":"8","rec')
    emu.destroy(sid)
    assert main(["record", sid, "-o", str(path), *conn(emu), "--append"]) == 0
    err = capsys.readouterr().err
    assert "appending to" in err and "after id 7" in err and "torn last line" in err
    assert emu.session_stats(sid).last_event_id == "7"
    events = list(read_recording(path))
    assert [e.id for e in events if e.id] == [str(i) for i in range(1, 13)]
    assert events[-1].type == "sse.stream.end"
    assert "stream ended: " in err


# --- replay -------------------------------------------------------------------------------------


def _start_replay(path: Path, *args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "replay", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    head = ""
    while "Try:" not in head:
        line = proc.stdout.readline()
        if not line:
            break
        head += line
    match = re.search(r"rxlens tail (\S+) --base-url (\S+) --api-key (\S+)", head)
    assert match, head
    return proc, {"sid": match.group(1), "base": match.group(2), "key": match.group(3)}


@pytest.mark.parametrize("pace", [["--speed", "20"], ["--max-speed"]], ids=["20x", "max"])
def test_replay_serves_a_recording_that_any_client_reads_like_the_live_session(
    emu: LensEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], pace: list[str]
) -> None:
    sid = finished_session(emu, 15)
    emu.destroy(sid)
    path = tmp_path / "run.jsonl"
    assert main(["record", sid, "-o", str(path), *conn(emu)]) == 0
    recorded = [e for e in read_recording(path) if e.type == "inference.result"]
    capsys.readouterr()

    proc, where = _start_replay(path, *pace)
    try:
        started = time.monotonic()
        args = ["tail", where["sid"], "--base-url", where["base"], "--api-key", where["key"]]
        assert main([*args, "--json", "--results-only"]) == 0
        took = time.monotonic() - started
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "played 15 events" in err
    served = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event_data"] for r in served] == [e.event_data for e in recorded]
    if pace[0] == "--speed":
        # At 20x the recorded pace, the replay takes about a twentieth of the recording's span.
        span = recorded[-1].received_at - recorded[0].received_at
        assert took >= span / 20 * 0.5


def test_replay_refuses_an_empty_recording_and_every_command_has_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert main(["replay", str(path)]) == 1
    assert "holds no events" in capsys.readouterr().err
    for command in ("demo", "tail", "record", "replay", "serve"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        if command != "serve":
            assert "examples:" in text, command
