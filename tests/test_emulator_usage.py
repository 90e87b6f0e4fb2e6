"""The three ways in: the vendor SDK against the emulator, the pytest fixture, ``rxlens serve``."""

from __future__ import annotations

import importlib.metadata
import re
import signal
import subprocess
import sys
import time
import warnings

import pytest
import requests
from test_emulator_support import frames_of, open_stream, result, take

from rxlens.emulator import LensEmulator

# --- the vendor's official SDK reads the emulator's stream ----------------------------------


def _sdk_lens_api(emu: LensEmulator) -> object:
    archetypeai = pytest.importorskip("archetypeai")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its lens API is marked deprecated
        return archetypeai.ArchetypeAI(emu.api_key, api_endpoint=emu.base_url).lens


@pytest.mark.parametrize("prefix", ["/api", "/v0.5"])
def test_vendor_sdk_creates_a_session_and_reads_the_stream(prefix: str) -> None:
    with LensEmulator(heartbeat_interval=0.2) as emu:
        lens = _sdk_lens_api(emu)
        lens.api_endpoint = lens.sessions.api_endpoint = emu.root_url + prefix  # type: ignore[attr-defined]
        metadata = lens.get_metadata(lens_id="lns-emu-machine-state")  # type: ignore[attr-defined]
        assert [m["lens_name"] for m in metadata] == ["machine-state"]
        session_id, endpoint = lens.create_session("lns-emu-manual")  # type: ignore[attr-defined]
        assert endpoint.endswith(session_id)
        reply = lens.sessions.process_event(  # type: ignore[attr-defined]
            session_id,
            {
                "type": "output_stream.set",
                "event_data": {"stream_type": "server_side_events_writer", "stream_config": {}},
            },
        )
        assert reply["type"] == "output_stream.set.response"

        reader = lens.sessions.create_sse_consumer(session_id)  # type: ignore[attr-defined]
        try:
            emu.wait_readers(session_id, 1)
            assert emu.session_stats(session_id).authorization_seen is True
            emu.push_many(session_id, [result(i) for i in range(3)])
            received = []
            for event in reader.read(block=True):
                received.append(event)
                if len(received) == 4:
                    emu.destroy(session_id)
                if event["type"] == "sse.stream.end":
                    break
        finally:
            reader.close()
        types = [e["type"] for e in received]
        assert types[0] == "sse.stream.start" and types[-1] == "sse.stream.end"
        results = [e["event_data"]["response"] for e in received if e["type"] == "inference.result"]
        assert results == [["r0"], ["r1"], ["r2"]]
        # The SDK sends no Last-Event-ID (measured in the notes): the emulator saw none.
        assert emu.session_stats(session_id).last_event_id is None
        destroyed = lens.sessions.destroy(session_id)  # type: ignore[attr-defined]
        assert destroyed["session_status"] == "SESSION_STATUS_DESTROYED"


def test_vendor_sdk_sees_capacity_errors_as_it_expects() -> None:
    with LensEmulator(max_sessions=0) as emu:
        lens = _sdk_lens_api(emu)
        with pytest.raises(ValueError, match="Failed to allocate lens runner"):
            lens.create_session("lns-emu-manual")  # type: ignore[attr-defined]


# --- the pytest plugin -----------------------------------------------------------------------


def test_plugin_is_registered_through_the_entry_point() -> None:
    points = importlib.metadata.entry_points(group="pytest11")
    assert any(p.name == "rxlens" and p.value == "rxlens.testing" for p in points)


@pytest.mark.lens_emulator(heartbeat_interval=0.05, replay="all")
def test_lens_emulator_fixture_takes_marker_settings(lens_emulator: LensEmulator) -> None:
    assert lens_emulator.heartbeat_interval == 0.05 and lens_emulator.replay == "all"
    sid = lens_emulator.create_session()
    lens_emulator.push(sid, result(0))
    frames = take(frames_of(open_stream(lens_emulator, sid)), 3)
    assert [f.type for f in frames] == [
        "sse.stream.start",
        "inference.result",
        "sse.stream.heartbeat",
    ]


def test_lens_emulator_factory_builds_independent_servers(lens_emulator_factory: object) -> None:
    a = lens_emulator_factory()  # type: ignore[operator]
    b = lens_emulator_factory(api_key="emu-fixed")  # type: ignore[operator]
    assert a.port != b.port and b.api_key == "emu-fixed"


# --- rxlens serve ----------------------------------------------------------------------------


def test_rxlens_serve_prints_url_key_session_and_stops_on_ctrl_c() -> None:
    command = [
        sys.executable,
        "-c",
        "import sys; from rxlens.cli import main; sys.exit(main())",
        "serve",
        "--port",
        "0",
        "--lens",
        "machine-state",
        "--rate",
        "50",
        "--api-key",
        "emu-cli-test",
        "--faults",
        "retry_ms=2000",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
        text = "".join(lines)
        base = re.search(r"serving at (http://127\.0\.0\.1:\d+/api)", text)
        session = re.search(r"Session id: (lsn-[0-9a-f]{16})", text)
        assert base and session and "API key:    emu-cli-test" in text, text
        response = requests.get(
            f"{base.group(1)}/lens/sessions/consumer/{session.group(1)}",
            headers={"Authorization": "Bearer emu-cli-test"},
            stream=True,
            timeout=5,
        )
        frames = take(frames_of(response), 3)
        response.close()
        assert frames[0].retry == "2000"
        assert [f.type for f in frames] == ["sse.stream.start", *["inference.result"] * 2]
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        assert time.monotonic() - started < 2.0
        assert code == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_rxlens_serve_rejects_bad_faults() -> None:
    from rxlens.cli import main

    assert main(["serve", "--port", "0", "--faults", "nonsense=1"]) == 1


def test_rxlens_serve_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from rxlens.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--port", str(busy.getsockname()[1])]) == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
