"""``LensClient.events(channel=...)`` end to end on the emulator: the mailbox channel, the
``"auto"`` choice, exactly-once across drops, and prompt dispose."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from reactivex import Observable

from rxlens import LensClient
from rxlens.emulator import LensEmulator, MailboxFaults
from rxlens.errors import ChannelError
from rxlens.events import InferenceResult, LensEvent
from rxlens.mailbox import PollPolicy
from rxlens.operators import only_results
from rxlens.retry import RetryPolicy
from rxlens.sse import ConnectionState

FAST = PollPolicy(min_interval=0.01, max_interval=0.05, status_every=2, reply_timeout=10)
QUICK = RetryPolicy(base=0.01, cap=0.05, jitter=0.0, max_attempts=10)


def result(i: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"r{i}"]}}


@pytest.fixture
def emu() -> Iterator[LensEmulator]:
    with LensEmulator(heartbeat_interval=0.2, replay="all") as emulator:
        yield emulator


@pytest.fixture
def client(emu: LensEmulator) -> Iterator[LensClient]:
    with LensClient(api_key=emu.api_key, base_url=emu.base_url) as lens_client:
        yield lens_client


def drain(events: Observable[LensEvent], timeout: float = 20) -> list[str]:
    """Every result text, waiting for the stream to complete (an error fails the test)."""
    texts: list[str] = []
    errors: list[Exception] = []
    done = threading.Event()

    def on_next(event: InferenceResult) -> None:
        texts.append(str(event.text))

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    subscription = events.pipe(only_results()).subscribe(on_next, on_error, done.set)
    try:
        assert done.wait(timeout), "the stream did not end"
    finally:
        subscription.dispose()
    assert not errors, errors
    return texts


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rxlens-mailbox-reader"]


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def notes(states: list[ConnectionState]) -> list[str]:
    return [s.note for s in states if s.note]


def test_typed_results_from_a_mailbox_session(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session("manual", channel="mailbox")
    emu.push_many(sid, [result(i) for i in range(5)])
    emu.destroy(sid)
    assert drain(client.events(sid, channel="mailbox", poll=FAST)) == [f"r{i}" for i in range(5)]
    assert wait_for(lambda: not reader_threads())
    client.close()  # its keep-alive REST connections too: then the emulator holds none
    assert wait_for(lambda: emu.stats.connections_open == 0)


def test_sse_keeps_the_channel_error_for_a_mailbox_lens(
    emu: LensEmulator, client: LensClient
) -> None:
    sid = emu.create_session("manual", channel="mailbox")
    with pytest.raises(ChannelError):
        client.events(sid, channel="sse")


def test_auto_reads_the_mailbox_of_a_mailbox_lens(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session("manual", channel="mailbox")
    emu.push_many(sid, [result(i) for i in range(3)])
    emu.destroy(sid)
    states: list[ConnectionState] = []
    assert client.choose_channel(sid)[0] == "mailbox"
    events = client.events(sid, poll=FAST, on_state=states.append)
    assert drain(events) == ["r0", "r1", "r2"]
    assert any("mailbox" in note and "mailbox_writer" in note for note in notes(states))


def test_auto_reads_sse_for_an_sse_lens(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session("manual")
    emu.push_many(sid, [result(i) for i in range(3)])
    emu.destroy(sid)
    states: list[ConnectionState] = []
    events = client.events(sid, on_state=states.append)
    assert drain(events) == ["r0", "r1", "r2"]
    assert any(note.startswith("reading the sse channel") for note in notes(states))


@pytest.mark.parametrize("writer", [None, "mailbox_writer"])
def test_auto_probes_when_the_lens_names_no_writer(
    emu: LensEmulator, client: LensClient, writer: str | None
) -> None:
    lens_id = client.lenses.register({"lens_name": "no-writer", "emulator_lens": "manual"})[
        "lens_id"
    ]
    sid = str(client.sessions.create(lens_id)["session_id"])
    if writer is not None:  # the writer is chosen per session, as the vendor's examples do
        client.sessions.process_event(sid, "output_stream.set", {"stream_type": writer})
    emu.push_many(sid, [result(i) for i in range(3)])
    expected = "mailbox" if writer else "sse"
    chosen, why = client.choose_channel(sid)
    assert chosen == expected
    assert ("probe" in why) if writer else ("outputs" in why)
    emu.destroy(sid)
    assert drain(client.events(sid, poll=FAST)) == ["r0", "r1", "r2"]


def test_each_event_exactly_once_across_drops_with_replay(
    emu: LensEmulator, client: LensClient
) -> None:
    faults = MailboxFaults(batch=2, drop_after=2, drops=3)
    sid = emu.create_session("manual", channel="mailbox", mailbox_faults=faults)
    emu.push_many(sid, [result(i) for i in range(12)])
    emu.destroy(sid)
    events = client.events(sid, channel="mailbox", poll=FAST, policy=QUICK, on_lost="replay")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a replay recovers: nothing to warn about
        assert drain(events) == [f"r{i}" for i in range(12)]
    assert emu.session_stats(sid).status == "DESTROYED"


def test_the_default_counts_and_warns_a_lost_batch(emu: LensEmulator, client: LensClient) -> None:
    faults = MailboxFaults(batch=2, drop_after=2, drops=1)
    sid = emu.create_session("manual", channel="mailbox", mailbox_faults=faults)
    emu.push_many(sid, [result(i) for i in range(8)])
    emu.destroy(sid)
    states: list[ConnectionState] = []
    events = client.events(sid, channel="mailbox", poll=FAST, policy=QUICK, on_state=states.append)
    with pytest.warns(RuntimeWarning, match="may be lost") as caught:
        got = drain(events)
    assert got == ["r0", "r1", "r4", "r5", "r6", "r7"]  # r2, r3: the lost batch
    assert len([w for w in caught if "may be lost" in str(w.message)]) == 1
    assert len([n for n in notes(states) if "may be lost" in n]) == 1


def test_dispose_during_a_blocked_read_ends_the_thread_at_once(
    emu: LensEmulator, client: LensClient
) -> None:
    sid = emu.create_session(
        "manual", channel="mailbox", mailbox_faults=MailboxFaults(reply_delay=30)
    )
    session_reads = emu._registry.session(sid)  # the emulator's own counters
    before = set(reader_threads())
    subscription = client.events(sid, channel="mailbox", poll=FAST).subscribe(lambda e: None)
    assert wait_for(lambda: session_reads.mailbox_reads >= 1)  # the reply is being withheld
    (thread,) = set(reader_threads()) - before
    started = time.monotonic()
    subscription.dispose()
    thread.join(0.1)
    assert not thread.is_alive(), f"still reading {time.monotonic() - started:.3f} s after dispose"


@pytest.mark.parametrize("channel", ["auto", "mailbox"])
def test_the_cli_tails_and_records_a_mailbox_session(
    emu: LensEmulator,
    channel: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rxlens.cli import main
    from rxlens.recording import read_recording

    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    sid = emu.create_session("machine-state", rate=0, seed=3, channel="mailbox")
    emu.step(sid, 6)
    emu.destroy(sid)
    connection = ["--base-url", emu.base_url, "--api-key", emu.api_key, "--channel", channel]
    assert main(["tail", sid, "--results-only", "--json", *connection]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["type"] for line in lines] == ["inference.result"] * 6
    assert emu.api_key not in out + err
    if channel == "auto":
        assert "reading the mailbox channel" in err
    path = tmp_path / "run.jsonl"
    assert main(["record", sid, "-o", str(path), *connection]) == 0
    assert sum(1 for e in read_recording(path) if e.type == "inference.result") == 6


def test_the_cli_keeps_the_channel_error_with_channel_sse(
    emu: LensEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from rxlens.cli import main

    sid = emu.create_session("manual", channel="mailbox")
    code = main(["tail", sid, "--base-url", emu.base_url, "--api-key", emu.api_key,
                 "--channel", "sse"])
    assert code != 0
    assert "session.read" in capsys.readouterr().err


def test_serve_offers_a_mailbox_session_that_tail_reads(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import re
    import signal
    import subprocess
    import sys

    from rxlens.cli import main

    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    entry = "import sys; from rxlens.cli import main; sys.exit(main())"
    argv = ["serve", "--port", "0", "--channel", "mailbox", "--lens", "machine-state"]
    proc = subprocess.Popen(
        [sys.executable, "-c", entry, *argv, "--rate", "20"],
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
        assert f"Session id: {sid} (lens machine-state, mailbox channel)" in out
        assert re.search(r"Mailbox:\s+ws://\S+/lens/sessions/" + sid, out)
        args = ["tail", sid, "-n", "3", "--results-only", "--json"]
        code = main([*args, "--base-url", base, "--api-key", key])
        tail_out, tail_err = capsys.readouterr()
        assert code == 0, tail_err
        assert len(tail_out.splitlines()) == 3
        assert "reading the mailbox channel" in tail_err
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("writer", [None, "mailbox_writer"])
def test_auto_undecided_reads_sse_and_reprobes_until_the_first_output(
    emu: LensEmulator, client: LensClient, writer: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rxlens.client

    monkeypatch.setattr(rxlens.client, "REPROBE_INTERVAL", 0.05)
    lens_id = client.lenses.register({"lens_name": "no-writer", "emulator_lens": "manual"})[
        "lens_id"
    ]
    sid = str(client.sessions.create(lens_id)["session_id"])
    if writer is not None:
        client.sessions.process_event(sid, "output_stream.set", {"stream_type": writer})
    states: list[ConnectionState] = []
    events = client.events(sid, poll=FAST, on_state=states.append)  # nothing output yet
    texts: list[str] = []
    done = threading.Event()
    subscription = events.pipe(only_results()).subscribe(
        lambda e: texts.append(str(e.text)), lambda e: done.set(), done.set
    )
    try:
        emu.push_many(sid, [result(i) for i in range(3)])
        assert wait_for(lambda: len(texts) == 3, timeout=10), texts
        emu.destroy(sid)
        assert done.wait(10)
    finally:
        subscription.dispose()
    assert texts == ["r0", "r1", "r2"]
    assert any("until the first output" in note for note in notes(states))
    probes = [t for t in threading.enumerate() if t.name == "rxlens-channel-probe"]
    assert wait_for(lambda: not any(t.is_alive() for t in probes))


def test_merge_sessions_reads_a_mailbox_and_an_sse_session_together(
    emu: LensEmulator, client: LensClient
) -> None:
    from rxlens import merge_sessions

    mailbox = emu.create_session("manual", channel="mailbox")
    sse = emu.create_session("manual")
    for sid in (mailbox, sse):
        emu.push_many(sid, [result(i) for i in range(3)])
        emu.destroy(sid)
    got: list[Any] = []
    done = threading.Event()
    merged = merge_sessions(client, [mailbox, sse], poll=FAST).pipe(only_results())
    subscription = merged.subscribe(got.append, lambda e: done.set(), done.set)
    try:
        assert done.wait(20)
    finally:
        subscription.dispose()
    by_session = {sid: [e.text for e in got if e.session_id == sid] for sid in (mailbox, sse)}
    assert by_session == {mailbox: ["r0", "r1", "r2"], sse: ["r0", "r1", "r2"]}
