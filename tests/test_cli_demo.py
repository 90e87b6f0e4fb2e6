"""``rxlens demo``: end to end through the real ``rxlens`` console script in a subprocess, and
the loss/duplication measure it prints (SSE sessions and a mailbox session)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxlens.cli import main
from rxlens.cli._demo import SentLog, content_key, tally

ROOT = Path(__file__).resolve().parent.parent
# The console script's entry point, for when the installed script is not on PATH.
ENTRY = "import sys; from rxlens.cli import main; sys.exit(main())"


def _demo(*args: str) -> subprocess.Popen[str]:
    # The installed `rxlens` script, importing this checkout (PYTHONPATH), as a user runs it.
    script = shutil.which("rxlens")
    command = [script] if script else [sys.executable, "-c", ENTRY]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [*command, "demo", "--seconds", "6", "--window", "2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, tuple[int, str, str]]]:
    """Three demos run side by side: the default one, one whose server sends no ids, and one
    whose mailbox session reports its lost batch instead of replaying it."""
    procs = {
        "default": _demo(),
        "no-ids": _demo("--faults", "ids=false"),
        "warn": _demo("--on-lost", "warn"),
    }
    out: dict[str, tuple[int, str, str]] = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=60)
            out[name] = (proc.returncode, stdout, stderr)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield out


def test_demo_runs_to_a_clean_exit_without_a_terminal(
    runs: dict[str, tuple[int, str, str]],
) -> None:
    code, stdout, stderr = runs["default"]
    assert code == 0, stderr
    assert "Traceback" not in stderr
    # Plain lines (no terminal): no escape codes.
    assert "\x1b[" not in stdout
    assert "activity: connected (sse)" in stdout and "machine: connected (sse)" in stdout
    assert "pump: connected (mailbox)" in stdout
    assert re.search(
        r"window 1: activity .* -> vote .* \| machine .* -> vote .* \| pump .* -> vote ", stdout
    )
    assert "summary after" in stdout


def test_demo_shows_the_channel_each_session_uses(runs: dict[str, tuple[int, str, str]]) -> None:
    _, stdout, _ = runs["default"]
    # Every session is read with channel="auto": the client chose, and the demo says what.
    assert re.search(
        r"pump: session lsn-\w+, lens machine-state \(writes to the session.read "
        r'mailbox\), read with channel="auto", lost batch: replay',
        stdout,
    )
    assert "activity: reading the sse channel (the lens writes to server_sent_events_writer)" in (
        stdout
    )
    assert "machine: reading the sse channel (" in stdout
    assert "pump: reading the mailbox channel (the lens writes to mailbox_writer)" in stdout
    status = re.search(
        r"status: activity sse open .* \| machine sse open .* \| pump mailbox ", stdout
    )
    assert status, stdout
    for name, channel in (("activity", "sse"), ("machine", "sse"), ("pump", "mailbox")):
        assert re.search(rf"  {name} +lsn-\w+ +[\w-]+ +{channel} +\d+ events delivered", stdout)


def test_demo_shows_the_injected_drop_and_a_measured_exact_resume(
    runs: dict[str, tuple[int, str, str]],
) -> None:
    _, stdout, _ = runs["default"]
    assert re.search(r"activity: connection lost after id \d+ \(TransportError\)", stdout)
    resumed = re.search(
        r"activity: reconnected after id (\d+) in (\d+\.\d) s: (\d+) lost, (\d+) duplicated",
        stdout,
    )
    assert resumed, stdout
    assert int(resumed.group(1)) == 9  # drop_after = 4 events/s * 6 s * 0.4
    assert float(resumed.group(2)) < 5.0
    assert resumed.group(3, 4) == ("0", "0")
    # The summary compares every event each emulated session sent with what was delivered.
    for name in ("activity", "machine", "pump"):
        line = re.search(
            rf"  {name} .* (\d+) events delivered, (\d+) sent: 0 lost, 0 duplicated", stdout
        )
        assert line, stdout
        delivered, sent = int(line.group(1)), int(line.group(2))
        assert delivered == sent > 10


def test_demo_shows_the_mailbox_drop_and_its_exact_replay(
    runs: dict[str, tuple[int, str, str]],
) -> None:
    _, stdout, _ = runs["default"]
    lost = re.search(
        r"pump: connection lost after cursor ([0-9a-f]+):(\d+) \(TransportError\)", stdout
    )
    assert lost, stdout
    # drop_after = 3 messages/s * 6 s * 0.5: the drop comes at the next read finding messages.
    assert int(lost.group(2)) >= 9
    # The replay reads again from the start under a fresh client_id (cursor at 0)...
    reopened = re.search(
        r"pump: connection open again in \S+ s \(mailbox cursor: ([0-9a-f]+):0\)", stdout
    )
    assert reopened and reopened.group(1) != lost.group(1), stdout
    # ... and skips what was delivered: the lost batch arrives, nothing twice.
    resumed = re.search(r"pump: reconnected after id (\d+) in \S+ s: (\d+) lost, (\d+) dup", stdout)
    assert resumed and resumed.group(2, 3) == ("0", "0"), stdout
    assert re.search(r"1 drop \(lost batch: replay\); reconnected after id \d+", stdout)
    assert "may be lost" not in stdout


def test_demo_counts_the_lost_batch_when_the_policy_only_warns(
    runs: dict[str, tuple[int, str, str]],
) -> None:
    code, stdout, stderr = runs["warn"]
    assert code == 0, stderr
    assert "lost batch: warn" in stdout
    assert "warning: rxlens mailbox: the connection dropped while a session.read was in flight" in (
        stdout
    )
    # Counted against the emulator's mailbox, by content: the batch the server took and never
    # sent is missing, and nothing else.
    pump = re.search(r"  pump .* (\d+) events delivered, (\d+) sent: (\d+) lost, 0 dup", stdout)
    assert pump, stdout
    delivered, sent, lost = map(int, pump.groups())
    assert lost >= 1 and delivered + lost == sent
    for name in ("activity", "machine"):
        assert re.search(rf"  {name} .* events delivered, \d+ sent: 0 lost, 0 duplicated", stdout)


def test_the_figures_are_counted_not_printed(runs: dict[str, tuple[int, str, str]]) -> None:
    # Without ids the reconnect cannot say where it stopped; the emulator then starts over and
    # the demo must report the replayed events as duplicates.
    code, stdout, _ = runs["no-ids"]
    assert code == 0
    resumed = re.search(r"reconnected after id (\d+) in \S+ s: 0 lost, (\d+) duplicated", stdout)
    assert resumed, stdout
    assert int(resumed.group(2)) == int(resumed.group(1)) > 0
    assert "warning: session" in stdout and "sends no event ids" in stdout
    activity = re.search(
        r"  activity .* (\d+) events delivered, (\d+) sent: 0 lost, (\d+) dup", stdout
    )
    assert activity
    delivered, sent, duplicated = map(int, activity.groups())
    assert delivered == sent + duplicated


def test_demo_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "rxlens demo --seconds" in text


def test_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--seconds", "0"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--seconds must be positive" in err
    assert main(["demo", "--api-key", "k"]) == 1
    assert "--session-id" in capsys.readouterr().err
    assert main(["demo", "--faults", "nope=1"]) == 1
    assert "unknown fault 'nope'" in capsys.readouterr().err


def test_real_mode_without_a_key_says_what_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    assert main(["demo", "--session-id", "lsn-x", "--seconds", "1"]) == 3
    assert "ATAI_API_KEY" in capsys.readouterr().err


# --- the measure --------------------------------------------------------------------------------


def test_tally_counts_losses_duplicates_and_strangers() -> None:
    result = tally([1, 2, 3, 4, 5], [1, 2, 2, 4, None, 5, 5, 5])
    assert (result.sent, result.delivered, result.lost) == (5, 7, 1)
    assert (result.duplicated, result.unexpected) == (3, 1)
    assert str(result) == "1 lost, 3 duplicated, 1 unexpected"


def test_tally_up_to_an_id_ignores_what_was_not_due_yet() -> None:
    result = tally([1, 2, 3, 4, 5], [1, 2, 3, 5], upto=3)
    assert (result.sent, result.lost, result.duplicated) == (3, 0, 0)


@given(
    st.lists(st.integers(1, 500), unique=True, max_size=60),
    st.data(),
)
def test_tally_law(sent: list[int], data: st.DataObject) -> None:
    # Deliver a random sub-multiset: lost = sent - distinct delivered, duplicated = extras.
    times = data.draw(st.lists(st.integers(0, 3), min_size=len(sent), max_size=len(sent)))
    delivered = [i for i, n in zip(sent, times, strict=True) for _ in range(n)]
    delivered = data.draw(st.permutations(delivered))
    result = tally(sent, delivered)
    assert result.lost == sum(1 for n in times if n == 0)
    assert result.duplicated == sum(n - 1 for n in times if n > 1)
    assert result.delivered == len(delivered)
    assert result.unexpected == 0


def test_sent_log_matches_by_content_whatever_the_key_order() -> None:
    log = [(1, {"type": "a", "event_data": {"x": 1, "y": 2}}), (2, {"type": "b"})]
    reads = 0

    def read() -> list[tuple[int, object]]:
        nonlocal reads
        reads += 1
        return list(log)

    sent = SentLog(read)
    assert sent.id_of(content_key({"event_data": {"y": 2, "x": 1}, "type": "a"})) == 1
    assert sent.id_of(content_key({"type": "b"})) == 2
    assert reads == 1
    assert sent.id_of(content_key({"type": "c"})) is None
    assert reads == 2  # an unknown event makes it read the log again
    assert sent.ids == [1, 2]


def test_real_session_mode_shows_the_same_view(capsys: pytest.CaptureFixture[str]) -> None:
    from rxlens.emulator import LensEmulator

    with LensEmulator(heartbeat_interval=0.5) as emu:
        sid = emu.create_session("machine-state", rate=10, seed=5)
        base = ["demo", "--session-id", sid, "--base-url", emu.base_url]
        assert main([*base, "--api-key", "wrong", "--seconds", "1"]) == 3
        assert "check the API key" in capsys.readouterr().err
        args = [*base, "--api-key", emu.api_key, "--seconds", "2.5", "--window", "1"]
        assert main(args) == 0
        assert emu.session_stats(sid).status == "RUNNING"  # a real session is never destroyed
    out = capsys.readouterr().out
    assert f"rxlens demo: Lens API at {emu.base_url}" in out
    assert "s1: connected" in out
    assert re.search(r"window 1: s1 (HEALTHY|BROKEN|unknown) \d+", out)
    delivered = re.search(rf"s1 +{sid} .* (\d+) events delivered", out)
    assert delivered and int(delivered.group(1)) >= 15


def test_the_live_view_renders_sessions_windows_alerts_and_resumes() -> None:
    import io

    from rich.console import Console

    from rxlens.cli._demo import DemoView, Track
    from rxlens.events import from_payload
    from rxlens.sse import ConnectionState

    def result(label: str, sid: str, event_id: str) -> object:
        import dataclasses

        payload = {"type": "inference.result", "event_data": {"response": [label, {}]}}
        return dataclasses.replace(from_payload(payload, id=event_id), session_id=sid)

    view = DemoView(
        [Track("lsn-a", "machine", "machine-state"), Track("lsn-b", "pump", "x", on_lost="warn")],
        window=10,
        seconds=30,
        title="test",
        out=io.StringIO(),
        plain=False,
    )
    note = "reading the sse channel: the lens writes to server_sent_events_writer"
    view.on_state("lsn-a", ConnectionState("connecting", "u", note=note))
    view.on_state(
        "lsn-b", ConnectionState("connecting", "u", note="reading the mailbox channel: x")
    )
    assert (view.tracks["lsn-a"].channel, view.tracks["lsn-b"].channel) == ("sse", "mailbox")
    view.on_state("lsn-a", ConnectionState("open", "u"))
    events = [result(label, "lsn-a", str(i)) for i, label in enumerate("AAB", 1)]
    for event in events:
        view.on_event(event)  # type: ignore[arg-type]
    view.on_window(events)  # type: ignore[arg-type]
    view.on_alert(events[0])  # type: ignore[arg-type]
    view.on_state("lsn-a", ConnectionState("backing_off", "u", delay=0.5, error=OSError("x")))
    console = Console(file=io.StringIO(), width=140, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "machine-state" in text and "backing_off" in text
    assert "channel" in text and re.search(r"machine .* sse ", text)
    assert "mailbox (lost batch: warn)" in text
    assert "A 2, B 1" in text  # results per label of the closed window
    assert "alerts (rising edges): 1" in text
    assert "connection lost after id 3 (OSError); reconnecting in 0.5 s" in text
    assert view.out.getvalue() == ""  # the live view prints nothing by itself


def test_the_last_window_cut_short_by_the_end_says_how_short() -> None:
    # The streams end at 30 s and flush a window of 0.2 s: it read like a full window 4.
    import io
    import time

    from rxlens.cli._demo import DemoView, Track

    out = io.StringIO()
    track = Track(session_id="lsn-1", name="pump", lens="machine-state")
    view = DemoView([track], window=10.0, seconds=30.0, title="t", out=out, plain=True)
    view.started = time.monotonic() - 10.0
    view.on_window([])  # a full window: no note
    view.started -= 20.2
    view.windows[-1].closed_at = 30.0
    view.on_window([])  # empty, at the end: not shown at all
    assert len(view.windows) == 1
    view.seconds = 60.0  # the same 0.2 s flush while the demo still runs
    view.on_window([])
    lines = out.getvalue().splitlines()
    assert "window 1: " in lines[0] and "(last" not in lines[0]
    assert "window 2 (last 0.2 s): " in lines[1]
    assert view.windows[-1].label(10.0) == "window 2 (last 0.2 s)"


def test_a_window_without_results_is_not_called_a_tie() -> None:
    # The demo's last window is often cut short with no result in it: it said "none (a tie)".
    from collections import Counter

    from rxlens.cli._demo import _show

    assert _show(None, Counter()) == "none (no results)"
    assert _show(None, Counter({"A": 2, "B": 2})) == "none (a tie)"
    assert _show("BROKEN", Counter({"BROKEN": 3})) == "BROKEN"
