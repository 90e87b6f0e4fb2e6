"""The emulator's ``session.read`` mailbox, driven by real WebSocket clients.

The emulator is what users test their readers against, so each fault a reader must survive
(the lost batch, every reply shape, slow replies, an unanswered heartbeat, close codes) is
checked here from the client's side of a real socket.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from rxlens.emulator import LensEmulator, MailboxFaults
from rxlens.events import InferenceResult
from rxlens.mailbox import MailboxSource, PollPolicy
from rxlens.operators import typed

FAST = PollPolicy(min_interval=0.01, max_interval=0.05, status_every=2, reply_timeout=10)


def result(i: int) -> dict[str, Any]:
    return {"type": "inference.result", "event_data": {"response": [f"r{i}"]}}


@pytest.fixture
def emu() -> Iterator[LensEmulator]:
    with LensEmulator(heartbeat_interval=1.0) as emulator:
        yield emulator


@contextmanager
def socket_of(emu: LensEmulator, sid: str, **options: Any) -> Iterator[ClientConnection]:
    options.setdefault("additional_headers", emu.headers)
    with connect(emu.mailbox_endpoint(sid), open_timeout=5, **options) as ws:
        yield ws


def ask(ws: ClientConnection, kind: str, data: Any = None, timeout: float = 5) -> Any:
    ws.send(json.dumps({"type": kind, "event_data": data}))
    return json.loads(ws.recv(timeout=timeout))


def read(ws: ClientConnection, client_id: str) -> Any:
    return ask(ws, "session.read", {"client_id": client_id})


def texts(reply: Any) -> list[str]:
    data = reply["event_data"]
    return [] if data is None else [m["event_data"]["response"][0] for m in data["messages"]]


# --- the upgrade --------------------------------------------------------------------------------


def test_the_record_hands_out_the_endpoint_the_emulator_serves(emu: LensEmulator) -> None:
    created = requests.post(
        emu.base_url + "/lens/sessions/create",
        json={"lens_id": "lns-emu-manual"},
        headers=emu.headers,
        timeout=5,
    ).json()
    with connect(created["session_endpoint"], additional_headers=emu.headers) as ws:
        assert ask(ws, "session.read", {"client_id": "a"}) == {
            "type": "session.read.response",
            "event_data": None,
        }


def test_subprotocol_auth_and_the_event_protocol_echo(emu: LensEmulator) -> None:
    sid = emu.create_session("manual", channel="mailbox")
    emu.push(sid, result(0))
    protocols: Any = [f"authenticationauthorization.bearer.{emu.api_key}", "event-protocol-v1"]
    with socket_of(emu, sid, additional_headers={}, subprotocols=protocols) as ws:
        assert ws.subprotocol == "event-protocol-v1"
        assert texts(read(ws, "a")) == ["r0"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
)
def test_a_missing_or_wrong_key_is_a_401_json_not_an_upgrade(
    emu: LensEmulator, headers: dict[str, str]
) -> None:
    sid = emu.create_session("manual", channel="mailbox")
    with pytest.raises(InvalidStatus) as caught:
        connect(emu.mailbox_endpoint(sid), additional_headers=headers, open_timeout=5)
    response = caught.value.response
    assert response.status_code == 401
    assert json.loads(response.body or b"{}")["errors"][0]["code"] == "unauthorized"
    protocols: Any = ["authenticationauthorization.bearer.wrong"]
    with pytest.raises(InvalidStatus) as again:
        connect(emu.mailbox_endpoint(sid), subprotocols=protocols, open_timeout=5)
    assert again.value.response.status_code == 401


def test_an_unknown_session_is_a_404_and_a_plain_get_a_426(emu: LensEmulator) -> None:
    endpoint = emu.mailbox_endpoint("lsn-nosuchsession")
    with pytest.raises(InvalidStatus) as caught:
        connect(endpoint, additional_headers=emu.headers, open_timeout=5)
    assert caught.value.response.status_code == 404
    sid = emu.create_session("manual", channel="mailbox")
    plain = requests.get(
        emu.mailbox_endpoint(sid).replace("ws://", "http://"), headers=emu.headers, timeout=5
    )
    assert plain.status_code == 426


# --- reading ------------------------------------------------------------------------------------


def test_positions_are_per_client_id_and_a_new_id_replays(emu: LensEmulator) -> None:
    sid = emu.create_session("manual", channel="mailbox", mailbox_faults=MailboxFaults(batch=2))
    emu.push_many(sid, [result(i) for i in range(3)])
    with socket_of(emu, sid) as ws:
        assert texts(read(ws, "a")) == ["r0", "r1"]
        assert texts(read(ws, "a")) == ["r2"]
        assert read(ws, "a")["event_data"] is None
        assert texts(read(ws, "b")) == ["r0", "r1"]  # fan-out: every id sees everything
        emu.push(sid, result(3))
        assert texts(read(ws, "a")) == ["r3"]
    with socket_of(emu, sid) as ws:  # a position outlives the connection
        assert texts(read(ws, "b")) == ["r2", "r3"]


def test_a_new_client_id_starts_at_the_oldest_message_retained() -> None:
    with LensEmulator(log_size=3) as emu:
        sid = emu.create_session("manual", channel="mailbox")
        emu.push_many(sid, [result(i) for i in range(5)])
        with socket_of(emu, sid) as ws:
            assert texts(read(ws, "fresh")) == ["r2", "r3", "r4"]


def test_a_mailbox_session_keeps_its_outputs_off_the_sse_log(emu: LensEmulator) -> None:
    sid = emu.create_session("machine-state", rate=0, channel="mailbox")
    emu.step(sid, 4)
    stats = emu.session_stats(sid)
    assert (stats.num_outputs, stats.last_id) == (4, 0)
    with socket_of(emu, sid) as ws:
        assert len(read(ws, "a")["event_data"]["messages"]) == 4


def test_the_mailbox_log_and_its_reads_are_visible_to_tests(emu: LensEmulator) -> None:
    # What a test (or the demo's loss count) compares a mailbox reader's deliveries with.
    sid = emu.create_session("manual", channel="mailbox", mailbox_faults=MailboxFaults(batch=2))
    emu.push_many(sid, [result(i) for i in range(3)])
    emu.push_many(sid, ["not json"])
    assert emu.mailbox_events(sid) == [
        (1, result(0)),
        (2, result(1)),
        (3, result(2)),
        (4, "not json"),
    ]
    assert emu.events(sid) == []  # nothing on the SSE log
    assert emu.session_stats(sid).mailbox_reads == 0
    with socket_of(emu, sid) as ws:
        read(ws, "a")
        read(ws, "a")
    assert emu.session_stats(sid).mailbox_reads == 2
    assert len(emu.mailbox_events(sid)) == 4  # reading takes nothing out of the log


def test_the_lens_metadata_names_the_channel_the_session_uses(emu: LensEmulator) -> None:
    mailbox = emu.create_session("manual", channel="mailbox")
    sse = emu.create_session("manual", channel="sse")
    records = requests.get(
        emu.base_url + "/lens/sessions/metadata", headers=emu.headers, timeout=5
    ).json()
    lens_of = {r["session_id"]: r["lens_id"] for r in records}
    lenses = requests.get(emu.base_url + "/lens/metadata", headers=emu.headers, timeout=5).json()
    writers = {
        lens["lens_id"]: [s["stream_type"] for s in lens["lens_config"]["output_streams"]]
        for lens in lenses
    }
    assert writers[lens_of[mailbox]] == ["mailbox_writer"]
    assert writers[lens_of[sse]] == ["server_sent_events_writer"]


def test_other_events_share_the_rest_dispatch_and_status_is_the_record(
    emu: LensEmulator,
) -> None:
    sid = emu.create_session("manual", channel="mailbox")
    emu.push(sid, result(0))
    with socket_of(emu, sid) as ws:
        status = ask(ws, "session.status")
        assert status["session_id"] == sid and status["session_status"].endswith("RUNNING")
        assert ask(ws, "session.validate")["event_data"]["is_valid"] is True
        assert ask(ws, "session.heartbeat") == {
            "type": "session.heartbeat.response",
            "event_data": None,
        }
        assert ask(ws, "no.such.event")["type"] == "error"
        assert ask(ws, "session.update", {"session_config": 5})["type"] == "error"
        assert ask(ws, "session.read", {})["type"] == "error"
        ws.send(b"not json")
        assert json.loads(ws.recv(timeout=5))["type"] == "error"
        destroyed = ask(ws, "session.destroy")
        assert destroyed["event_data"]["session_status"].endswith("DESTROYED")
    # session.read over POST /lens/sessions/events/process, as the vendor's example once did.
    reply = requests.post(
        emu.base_url + "/lens/sessions/events/process",
        json={
            "session_id": sid,
            "event": {"type": "session.read", "event_data": {"client_id": "r"}},
        },
        headers=emu.headers,
        timeout=5,
    ).json()
    assert texts(reply) == ["r0"]
    bad = requests.post(
        emu.base_url + "/lens/sessions/events/process",
        json={"session_id": sid, "event": {"type": "session.read", "event_data": {}}},
        headers=emu.headers,
        timeout=5,
    )
    assert bad.status_code == 400


# --- faults ---------------------------------------------------------------------------------------


def test_the_lost_batch_fault_advances_the_position_and_never_replies(emu: LensEmulator) -> None:
    faults = MailboxFaults(batch=2, drop_after=2, drops=1)
    sid = emu.create_session("manual", channel="mailbox", mailbox_faults=faults)
    emu.push_many(sid, [result(i) for i in range(6)])
    with socket_of(emu, sid) as ws:
        assert texts(read(ws, "a")) == ["r0", "r1"]
        ws.send(json.dumps({"type": "session.read", "event_data": {"client_id": "a"}}))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    with socket_of(emu, sid) as ws:
        assert texts(read(ws, "a")) == ["r4", "r5"]  # r2 and r3 are gone for this id
        assert texts(read(ws, "fresh")) + texts(read(ws, "fresh")) == ["r0", "r1", "r2", "r3"]


@pytest.mark.parametrize("shape", ["messages", "envelope", "data"])
def test_every_reply_shape_gives_the_same_typed_events(emu: LensEmulator, shape: Any) -> None:
    sid = emu.create_session(
        "manual", channel="mailbox", mailbox_faults=MailboxFaults(reply_shape=shape)
    )
    emu.push_many(sid, [result(i) for i in range(3)])
    with socket_of(emu, sid) as ws:
        first = read(ws, "peek")["event_data"]
    if shape == "envelope":
        assert first["type"] == "inference.result"
    elif shape == "data":
        assert "data" in first["messages"][0] and "event_data" not in first["messages"][0]
    else:
        assert len(first["messages"]) == 3
    emu.destroy(sid)
    source = MailboxSource(emu.mailbox_endpoint(sid), api_key=emu.api_key, poll=FAST)
    got: list[Any] = []
    done = threading.Event()
    source.pipe(typed()).subscribe(got.append, lambda e: done.set(), done.set)
    assert done.wait(10)
    assert [e.text for e in got if isinstance(e, InferenceResult)] == ["r0", "r1", "r2"]


def test_slow_replies_are_slow(emu: LensEmulator) -> None:
    sid = emu.create_session(
        "manual", channel="mailbox", mailbox_faults=MailboxFaults(reply_delay=0.3)
    )
    with socket_of(emu, sid) as ws:
        started = time.monotonic()
        read(ws, "a")
        assert time.monotonic() - started >= 0.3


def test_an_unanswered_heartbeat_leaves_later_replies_in_step(emu: LensEmulator) -> None:
    sid = emu.create_session(
        "manual", channel="mailbox", mailbox_faults=MailboxFaults(heartbeat_reply=False)
    )
    emu.push(sid, result(0))
    with socket_of(emu, sid) as ws:
        ws.send(json.dumps({"type": "session.heartbeat"}))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        assert texts(read(ws, "a")) == ["r0"]


@pytest.mark.parametrize("code", [1001, 1011])
def test_close_codes(emu: LensEmulator, code: int) -> None:
    sid = emu.create_session(
        "manual", channel="mailbox", mailbox_faults=MailboxFaults(close_after=1, close_code=code)
    )
    with socket_of(emu, sid) as ws:
        assert read(ws, "a")["type"] == "session.read.response"
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=5)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == code


def test_closing_the_emulator_ends_an_open_socket() -> None:
    emu = LensEmulator().start()
    sid = emu.create_session("manual", channel="mailbox")
    ws = connect(emu.mailbox_endpoint(sid), additional_headers=emu.headers, open_timeout=5)
    try:
        assert texts(read(ws, "a")) == []
        emu.close()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    finally:
        ws.close()
