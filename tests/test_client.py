"""LensClient against the emulator: configuration, typed connections, ``events`` and ``follow``."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import pytest
from sinks import subscribe

from rxlens import LensClient, RetryPolicy
from rxlens.client import DEFAULT_BASE_URL
from rxlens.emulator import Faults, LensEmulator
from rxlens.errors import (
    AuthenticationError,
    ChannelError,
    ConfigurationError,
    HeartbeatTimeout,
    NotFound,
)
from rxlens.events import (
    Heartbeat,
    InferenceResult,
    LensEvent,
    MalformedEvent,
    StreamEnd,
    StreamStart,
)
from rxlens.operators import only_results
from rxlens.sse import ConnectionState

FAST = RetryPolicy.immediate(max_attempts=20)


def results(items: list[LensEvent]) -> list[InferenceResult]:
    return [e for e in items if isinstance(e, InferenceResult)]


def payload(n: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"r{n}"], "query_id": f"q{n}"}}


@pytest.fixture()
def emu() -> Any:
    with LensEmulator(heartbeat_interval=0.2, idle_timeout=30) as emulator:
        yield emulator


@pytest.fixture(params=["threads", "asyncio"])
def client(emu: LensEmulator, request: pytest.FixtureRequest) -> Any:
    # Every test on this fixture runs with both I/O designs.
    with LensClient(api_key=emu.api_key, base_url=emu.base_url, io=request.param) as c:
        yield c


# --- configuration ----------------------------------------------------------------------------


def test_key_and_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATAI_API_KEY", "env-key-123")
    monkeypatch.setenv("ATAI_API_ENDPOINT", "http://127.0.0.1:1/v0.5/")
    client = LensClient()
    assert client.base_url == "http://127.0.0.1:1/v0.5"
    assert client.auth_headers() == {"Authorization": "Bearer env-key-123"}


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATAI_API_ENDPOINT", raising=False)
    assert LensClient(api_key="k").base_url == DEFAULT_BASE_URL
    assert DEFAULT_BASE_URL == "https://platform.u1.archetypeai.app/api"


def test_missing_key_is_a_clear_error_at_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATAI_API_KEY", raising=False)
    client = LensClient(base_url="http://127.0.0.1:1/api")  # constructing is fine
    with pytest.raises(ConfigurationError, match="ATAI_API_KEY"):
        client.connect("lsn-1")


def test_key_never_in_repr() -> None:
    client = LensClient(api_key="sk-very-secret", base_url="http://127.0.0.1:1/api")
    assert "sk-very-secret" not in repr(client)
    assert "sk-very-secret" not in repr(client.connect("lsn-1"))


def test_bad_base_url() -> None:
    with pytest.raises(ConfigurationError):
        LensClient(api_key="k", base_url="platform.example/api")


def test_verify_false_warns() -> None:
    import rxlens.client as module

    module._insecure_warned.clear()
    with pytest.warns(UserWarning, match="verification is off"):
        LensClient(api_key="k", base_url="https://127.0.0.1:1/api", verify=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LensClient(api_key="k", base_url="https://127.0.0.1:1/api", verify=False)  # once only


# --- connect ----------------------------------------------------------------------------------


@pytest.mark.parametrize("io", ["threads", "asyncio"])
@pytest.mark.parametrize("prefix", ["/api", "/v0.5"])
def test_connect_gives_typed_events_under_both_prefixes(
    emu: LensEmulator, prefix: str, io: Any
) -> None:
    client = LensClient(api_key=emu.api_key, base_url=emu.root_url + prefix, io=io)
    sid = emu.create_session()
    sink, disposable = subscribe(client.connect(sid))
    emu.wait_readers(sid, 1)
    emu.push(sid, payload(1))
    sink.wait_for(lambda items: len(results(items)) == 1)
    disposable.dispose()
    assert isinstance(sink.items[0], StreamStart)
    result = results(sink.items)[0]
    assert result.text == "r1" and result.query_id == "q1"
    assert result.id is not None and result.received_at > 0 and '"r1"' in result.raw


@pytest.mark.parametrize("io", ["threads", "asyncio"])
def test_wrong_key_is_authentication_error(emu: LensEmulator, io: Any) -> None:
    client = LensClient(api_key="wrong-key", base_url=emu.base_url, io=io)
    sid = emu.create_session()
    sink, _ = subscribe(client.events(sid, policy=FAST, check_channel=False))
    sink.wait()
    assert isinstance(sink.error, AuthenticationError)
    assert "wrong-key" not in str(sink.error)


def test_unknown_session_is_not_found(client: LensClient) -> None:
    sink, _ = subscribe(client.events("lsn-nope", policy=FAST, check_channel=False))
    sink.wait()
    assert isinstance(sink.error, NotFound)


# --- events -----------------------------------------------------------------------------------


def test_events_completes_after_stream_end(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session()
    sink, _ = subscribe(client.events(sid, policy=FAST))
    emu.wait_readers(sid, 1)
    emu.push_many(sid, [payload(i) for i in range(3)])
    sink.wait_for(lambda items: len(results(items)) == 3)
    emu.destroy(sid)
    sink.wait()
    assert sink.completed
    assert isinstance(sink.items[-1], StreamEnd)
    assert [r.text for r in results(sink.items)] == ["r0", "r1", "r2"]


def test_events_resume_across_drops_exactly_once(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session(faults=Faults(drop_after=4, drops=3))
    sink, disposable = subscribe(client.events(sid, policy=FAST).pipe(only_results()))
    emu.wait_readers(sid, 1)
    emu.push_many(sid, [payload(i) for i in range(20)])
    sink.wait_for(lambda items: len(items) >= 20)
    time.sleep(0.1)
    disposable.dispose()
    assert [r.text for r in sink.items] == [f"r{i}" for i in range(20)]
    assert emu.session_stats(sid).connections >= 2


def test_events_resume_a_silent_connection(emu: LensEmulator, client: LensClient) -> None:
    # A stall stops everything, heartbeats included: the heartbeat timeout must resume.
    sid = emu.create_session(faults=Faults(stall_after=2, stall_for=30, stalls=1))
    states: list[ConnectionState] = []
    sink, disposable = subscribe(
        client.events(sid, policy=FAST, heartbeat_timeout=0.5, on_state=states.append).pipe(
            only_results()
        )
    )
    emu.wait_readers(sid, 1)
    emu.push_many(sid, [payload(i) for i in range(5)])
    sink.wait_for(lambda items: len(items) >= 5, timeout=15)
    disposable.dispose()
    assert [r.text for r in sink.items] == [f"r{i}" for i in range(5)]
    backoff = [s for s in states if s.kind == "backing_off"]
    assert backoff and isinstance(backoff[0].error, HeartbeatTimeout)


def test_heartbeats_keep_a_quiet_stream_alive(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session()
    sink, disposable = subscribe(client.events(sid, policy=FAST, heartbeat_timeout=0.6))
    sink.wait_for(lambda items: sum(isinstance(e, Heartbeat) for e in items) >= 4)
    disposable.dispose()
    assert sink.error is None
    assert emu.session_stats(sid).connections == 1


def test_without_ids_it_reconnects_and_warns_once(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session(faults=Faults(ids=False, drop_after=2, drops=2))
    states: list[ConnectionState] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _sink, disposable = subscribe(client.events(sid, policy=FAST, on_state=states.append))
        emu.wait_readers(sid, 1)
        deadline = time.monotonic() + 10
        n = 0
        while emu.session_stats(sid).connections < 3:
            assert time.monotonic() < deadline, "the drops did not happen"
            emu.push(sid, payload(n))
            n += 1
            time.sleep(0.02)
        disposable.dispose()
    # (the first note says which channel channel="auto" chose)
    notes = [s.note for s in states if s.note and not s.note.startswith("reading the")]
    assert len(notes) == 1 and "may be missing" in notes[0]
    assert sum("may be missing" in str(w.message) for w in caught) == 1


def test_malformed_frames_are_emitted(emu: LensEmulator, client: LensClient) -> None:
    sid = emu.create_session()
    sink, disposable = subscribe(client.events(sid, policy=FAST))
    emu.wait_readers(sid, 1)
    emu.push(sid, "not json at all")
    emu.push(sid, payload(1))
    sink.wait_for(lambda items: len(results(items)) == 1)
    disposable.dispose()
    malformed = [e for e in sink.items if isinstance(e, MalformedEvent)]
    assert len(malformed) == 1 and malformed[0].raw == "not json at all"


def test_follow_reconnects_after_idle_end_while_running() -> None:
    with LensEmulator(heartbeat_interval=0.1, idle_timeout=0.4) as emu:
        client = LensClient(api_key=emu.api_key, base_url=emu.base_url)
        sid = emu.create_session()
        sink, _ = subscribe(client.events(sid, policy=FAST, follow=True).pipe(only_results()))
        emu.wait_readers(sid, 1)
        emu.push(sid, payload(0))
        # The stream ends after 0.4 s idle; follow reconnects since the session runs.
        deadline = time.monotonic() + 10
        while emu.session_stats(sid).connections < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        emu.wait_readers(sid, 1)
        emu.push(sid, payload(1))
        sink.wait_for(lambda items: len(items) == 2)
        emu.destroy(sid)
        sink.wait()
        assert sink.completed
        assert [r.text for r in sink.items] == ["r0", "r1"]


# --- channel check ----------------------------------------------------------------------------


def register_lens(client: LensClient, writer: str) -> str:
    config = {"lens_name": f"test-{writer}", "output_streams": [{"stream_type": writer}]}
    return str(client.lenses.register(config)["lens_id"])


@pytest.mark.parametrize(
    "writer", ["server_sent_events_writer", "server_side_events_writer", "sse_writer"]
)
def test_sse_lenses_pass_the_channel_check(client: LensClient, writer: str) -> None:
    lens_id = register_lens(client, writer)
    with client.session(lens_id) as sid:
        # The check read the lens's configuration (it only warns when it cannot) and found
        # the SSE writer in it: no ChannelError, and no warning either.
        assert writer in json.dumps(client.sessions.lens_config(sid))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert client.check_channel(sid) is None
            client.events(sid, policy=FAST)  # the same check, through the preset
        assert [str(w.message) for w in caught] == []


def test_mailbox_lens_raises_channel_error(client: LensClient) -> None:
    lens_id = register_lens(client, "session_read_writer")
    with client.session(lens_id) as sid, pytest.raises(ChannelError, match=r"session\.read"):
        client.events(sid, channel="sse")


def test_unreadable_metadata_warns_and_goes_ahead(emu: LensEmulator) -> None:
    client = LensClient(api_key=emu.api_key, base_url=emu.base_url)
    # The metadata request (the first naming the session) fails; the stream after it works.
    sid = emu.create_session(faults=Faults(fail_next=1, fail_status=500))
    with pytest.warns(UserWarning, match="output channel"):
        events = client.events(sid, policy=FAST)
    sink, _ = subscribe(events.pipe(only_results()))
    emu.wait_readers(sid, 1, timeout=10)
    emu.push(sid, payload(1))
    emu.destroy(sid)
    sink.wait()
    assert sink.error is None and [r.text for r in sink.items] == ["r1"]


@pytest.mark.parametrize("io", ["threads", "asyncio"])
def test_a_rejected_key_is_reported_once_by_the_stream(emu: LensEmulator, io: Any) -> None:
    client = LensClient(api_key="not-the-key", base_url=emu.base_url, io=io)
    sid = emu.create_session()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a channel-check warning first would report it twice
        events = client.events(sid, policy=FAST)
    sink, _ = subscribe(events)
    sink.wait()
    assert isinstance(sink.error, AuthenticationError)


def test_session_context_destroys_on_error(client: LensClient, emu: LensEmulator) -> None:
    lens_id = register_lens(client, "server_sent_events_writer")
    with pytest.raises(RuntimeError), client.session(lens_id) as sid:
        raise RuntimeError("user code failed")
    assert "DESTROYED" in str(client.sessions.status(sid))


# --- many sessions ----------------------------------------------------------------------------


def test_merge_sessions_with_a_client_tags_and_isolates_failures() -> None:
    from rxlens.operators import SessionFailed

    # replay="all": the events are in the log before anyone reads, so no timing is involved.
    with LensEmulator(heartbeat_interval=0.2, replay="all") as emu:
        client = LensClient(api_key=emu.api_key, base_url=emu.base_url)
        good = emu.create_session()
        emu.push_many(good, [payload(i) for i in range(3)])
        merged = client.merge_sessions([good, "lsn-missing"], policy=FAST, check_channel=False)
        sink, disposable = subscribe(merged)
        sink.wait_for(
            lambda items: len(results(items)) == 3
            and any(isinstance(e, SessionFailed) for e in items)
        )
        disposable.dispose()
        client.close()
    failed = [e for e in sink.items if isinstance(e, SessionFailed)]
    assert len(failed) == 1 and failed[0].session_id == "lsn-missing"
    assert isinstance(failed[0].error, NotFound)
    assert [r.text for r in results(sink.items)] == ["r0", "r1", "r2"]
    assert {r.session_id for r in results(sink.items)} == {good}


def test_there_is_one_merge_sessions(client: LensClient) -> None:
    import rxlens
    import rxlens.client
    import rxlens.operators

    assert rxlens.merge_sessions is rxlens.operators.merge_sessions
    assert rxlens.client.merge_sessions is rxlens.operators.merge_sessions
    with pytest.raises(ConfigurationError, match="no session ids"):
        rxlens.merge_sessions({}, ["lsn-a"])
    with pytest.raises(TypeError, match="mapping"):
        rxlens.merge_sessions(42)  # type: ignore[arg-type]
