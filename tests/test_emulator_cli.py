"""The commands that serve the emulator: one host guard, and the browser options of ``serve``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from rxlens.cli import build_parser, main
from rxlens.emulator import EmulatorError, LensEmulator

ENTRY = "import sys; from rxlens.cli import main; sys.exit(main())"
ORIGIN = "http://localhost:5173"


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    monkeypatch.delenv("ATAI_API_ENDPOINT", raising=False)


def recording(tmp_path: Path) -> Path:
    """A small recording made with ``rxlens record`` from a finished emulator session."""
    path = tmp_path / "run.jsonl"
    with LensEmulator(replay="all", heartbeat_interval=0.2) as emu:
        sid = emu.create_session("machine-state", rate=0, seed=3)
        emu.step(sid, 3)
        emu.destroy(sid)
        conn = ["--base-url", emu.base_url, "--api-key", emu.api_key]
        assert main(["record", sid, "-o", str(path), *conn]) == 0
    return path


# --- one host guard for every command that serves ----------------------------------------------


def test_replay_refuses_another_interface_with_a_generated_key(tmp_path: Path) -> None:
    path = recording(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "replay", str(path), "--host", "0.0.0.0", "--no-wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"replay served on 0.0.0.0 with a generated key:\n{out}") from None
    assert proc.returncode != 0
    assert "--api-key" in err and "0.0.0.0" in err
    assert "API key:" not in out


def test_no_auth_is_for_loopback_only(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--api-key", "chosen", "--no-auth", "--port", "0"])
    assert code != 0
    assert "--no-auth" in capsys.readouterr().err
    with pytest.raises(EmulatorError, match="loopback"):
        LensEmulator(host="0.0.0.0", require_auth=False)


# --- CORS and key-less mode ---------------------------------------------------------------------


def test_cors_preflight_and_answers_carry_the_allowed_origin() -> None:
    with LensEmulator(cors_origin=ORIGIN) as emu:
        sid = emu.create_session()
        preflight = requests.options(
            emu.consumer_url(sid),
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization,last-event-id",
            },
            timeout=5,
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "last-event-id" in allowed
        answer = requests.get(emu.base_url + "/lens/metadata", headers=emu.headers, timeout=5)
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        stream = requests.get(emu.consumer_url(sid), headers=emu.headers, stream=True, timeout=5)
        assert stream.headers["Access-Control-Allow-Origin"] == ORIGIN
        stream.close()


def test_without_cors_a_preflight_gets_a_json_refusal() -> None:
    with LensEmulator() as emu:
        answer = requests.options(emu.base_url + "/lens/metadata", timeout=5)
        assert answer.status_code == 403
        assert answer.json()["errors"][0]["code"] == "cors_not_enabled"
        assert "Access-Control-Allow-Origin" not in answer.headers


def test_key_less_mode_serves_without_a_key() -> None:
    with LensEmulator(require_auth=False) as emu:
        sid = emu.create_session()
        stream = requests.get(emu.consumer_url(sid), stream=True, timeout=5)
        assert stream.status_code == 200
        stream.close()
        assert requests.get(emu.base_url + "/lens/metadata", timeout=5).status_code == 200


def test_serve_with_cors_and_no_auth(capsys: pytest.CaptureFixture[str]) -> None:
    from rxlens.cli._serve import run

    args = build_parser().parse_args(["serve", "--port", "0", "--cors", ORIGIN, "--no-auth"])
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(args,), kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        out = ""
        for _ in range(400):
            out += capsys.readouterr().out
            if "Press Ctrl-C" in out:
                break
            thread.join(0.025)
        base = re.search(r"serving at (\S+)", out)
        sid = re.search(r"Session id: (\S+)", out)
        assert base and sid, out
        assert "none needed (--no-auth)" in out and ORIGIN in out
        consumer = f"{base.group(1)}/lens/sessions/consumer/{sid.group(1)}"
        stream = requests.get(consumer, headers={"Origin": ORIGIN}, stream=True, timeout=5)
        assert stream.status_code == 200
        assert stream.headers["Access-Control-Allow-Origin"] == ORIGIN
        stream.close()
    finally:
        stop.set()
        thread.join(5.0)


# --- rxlens serve, as a terminal user runs it ---------------------------------------------------


def test_serve_prints_ready_lines_and_ends_open_streams_when_stopped() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "serve", "--port", "0", "--heartbeat-interval", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        out = ""
        while "Press Ctrl-C" not in out:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        tail = re.search(r"rxlens tail (\S+) --base-url (\S+) --api-key (\S+)", out)
        assert tail, out
        sid, base, key = tail.groups()
        assert f"export ATAI_API_ENDPOINT={base}" in out and f"export ATAI_API_KEY={key}" in out
        stream = requests.get(
            f"{base}/lens/sessions/consumer/{sid}",
            headers={"Authorization": f"Bearer {key}"},
            stream=True,
            timeout=10,
        )
        lines = stream.iter_lines(chunk_size=None)
        assert b"sse.stream.start" in next(line for line in lines if line.startswith(b"data:"))
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest = [line for line in lines if line.startswith(b"data:")]
        assert rest and b"sse.stream.end" in rest[-1], rest
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
