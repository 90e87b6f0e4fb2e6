"""The emulator's HTTP API and consumer stream, driven with plain ``requests`` and sockets."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from test_emulator_support import (
    frames_of,
    open_stream,
    raw_get,
    read_raw,
    result,
    split_response,
    take,
    until_type,
)

from rxlens.emulator import (
    CAPACITY_MESSAGE,
    CapacityError,
    EmulatorTimeout,
    Faults,
    LensEmulator,
    ServerLimits,
    SessionEnded,
    UnknownSession,
)
from rxlens.emulator._sessions import EventLog
from rxlens.errors import RxLensError


@pytest.fixture
def emu() -> LensEmulator:
    with LensEmulator(heartbeat_interval=0.1, idle_timeout=30.0) as e:
        yield e


# --- the JSON session API ------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", "/v0.5"])
def test_session_api_round_trip_under_both_prefixes(emu: LensEmulator, prefix: str) -> None:
    base = emu.root_url + prefix
    h = emu.headers
    lens = requests.post(
        base + "/lens/register",
        json={"lens_config": {"lens_name": "machine-state", "output_streams": []}},
        headers=h,
        timeout=5,
    ).json()
    assert re.fullmatch(r"lns-[0-9a-f]{16}", lens["lens_id"])
    meta = requests.get(
        base + "/lens/metadata", params={"lens_id": lens["lens_id"]}, headers=h, timeout=5
    ).json()
    assert [m["lens_name"] for m in meta] == ["machine-state"]

    created = requests.post(
        base + "/lens/sessions/create", json={"lens_id": lens["lens_id"]}, headers=h, timeout=5
    ).json()
    sid = created["session_id"]
    assert re.fullmatch(r"lsn-[0-9a-f]{16}", sid)
    assert created["session_status"] == "LensSessionStatus.SESSION_STATUS_REGISTERED"
    assert created["session_endpoint"].endswith(f"/lens/sessions/{sid}")
    assert created["num_outputs"] == 0

    def process(event: dict[str, object]) -> dict[str, object]:
        body = {"session_id": sid, "event": event}
        reply = requests.post(
            base + "/lens/sessions/events/process", json=body, headers=h, timeout=5
        )
        assert reply.status_code == 200
        return reply.json()  # type: ignore[no-any-return]

    status = process({"type": "session.status"})
    assert status["type"] == "session.status.response"
    assert status["event_data"]["session_status"] == "SESSION_STATUS_RUNNING"  # type: ignore[index]
    assert process({"type": "session.validate"})["event_data"] == {
        "is_valid": True,
        "error_messages": [],
    }
    assert (
        process({"type": "session.update", "event_data": {}})["type"] == "session.update.response"
    )
    assert (
        process({"type": "input_stream.set", "event_data": {"stream_type": "csv_file_reader"}})[
            "type"
        ]
        == "input_stream.set.response"
    )
    for writer in ("server_sent_events_writer", "server_side_events_writer", "sse_writer"):
        reply = process({"type": "output_stream.set", "event_data": {"stream_type": writer}})
        assert reply["type"] == "output_stream.set.response"
    assert process({"type": "no.such.event"})["type"] == "error"

    listed = requests.get(
        base + "/lens/sessions/metadata",
        params={"session_id": sid, "shard_index": -1, "max_items_per_shard": -1},
        headers=h,
        timeout=5,
    ).json()
    assert [(s["session_id"], s["num_outputs"]) for s in listed] == [(sid, 0)]

    destroyed = requests.post(
        base + "/lens/sessions/destroy", json={"session_id": sid}, headers=h, timeout=5
    ).json()
    assert destroyed["session_status"] == "SESSION_STATUS_DESTROYED"
    deleted = requests.post(
        base + "/lens/delete", json={"lens_id": lens["lens_id"]}, headers=h, timeout=5
    )
    assert deleted.status_code == 200


def test_unknown_session_in_process_gets_the_error_message_shape(emu: LensEmulator) -> None:
    reply = requests.post(
        emu.base_url + "/lens/sessions/events/process",
        json={"session_id": "lsn-nope", "event": {"type": "session.status"}},
        headers=emu.headers,
        timeout=5,
    ).json()
    assert reply == {"type": "error", "message": "Unknown session id: lsn-nope"}


def test_capacity_limit_answers_the_allocation_error() -> None:
    with LensEmulator(max_sessions=1) as emu:
        emu.create_session()
        reply = requests.post(
            emu.base_url + "/lens/sessions/create",
            json={"lens_id": "lns-emu-manual"},
            headers=emu.headers,
            timeout=5,
        ).json()
        assert reply == {"errors": [CAPACITY_MESSAGE]}
        with pytest.raises(CapacityError):
            emu.create_session()
        emu.destroy(emu.session_ids[0])
        assert emu.create_session().startswith("lsn-")


# --- auth and not-found ----------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
def test_missing_or_unknown_key_gets_401_json(emu: LensEmulator, headers: dict[str, str]) -> None:
    sid = emu.create_session()
    for response in (
        open_stream(emu, sid, headers=headers),
        requests.get(emu.base_url + "/lens/sessions/metadata", headers=headers, timeout=5),
    ):
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/json"
        error = response.json()["errors"][0]
        assert error["code"] == "unauthorized" and error["error_uid"].startswith("err-")
        assert emu.api_key not in response.text
    stats = emu.session_stats(sid)
    # A request without a valid key changes nothing: the key is checked before any state.
    assert stats.authorization_seen is None and stats.consumer_requests == 0
    assert stats.connections == 0
    assert emu.stats.unauthorized == 2


def test_extra_api_keys_are_accepted() -> None:
    with LensEmulator(api_key="emu-primary", api_keys=["emu-second"]) as emu:
        sid = emu.create_session()
        response = open_stream(emu, sid, headers={"Authorization": "Bearer emu-second"})
        assert response.status_code == 200
        response.close()
        assert "emu-primary" not in repr(emu)


def test_unknown_session_gets_404_errors_envelope(emu: LensEmulator) -> None:
    response = open_stream(emu, "lsn-0000000000000000")
    assert response.status_code == 404
    assert response.json()["errors"][0]["message"] == "Unknown session id: lsn-0000000000000000"
    destroy = requests.post(
        emu.base_url + "/lens/sessions/destroy",
        json={"session_id": "lsn-x"},
        headers=emu.headers,
        timeout=5,
    )
    assert destroy.status_code == 404


def test_unknown_session_end_variant_streams_start_then_end() -> None:
    with LensEmulator(unknown_session="end") as emu:
        response = open_stream(emu, "lsn-0000000000000000")
        assert response.status_code == 200
        assert [f.type for f in frames_of(response)] == ["sse.stream.start", "sse.stream.end"]


# --- the stream --------------------------------------------------------------------------------


def test_frames_start_data_in_order_then_end_on_destroy(emu: LensEmulator) -> None:
    sid = emu.create_session()
    response = open_stream(emu, sid)
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Transfer-Encoding"] == "chunked"
    frames = frames_of(response)
    start = next(frames)
    assert start.event == "message" and start.id is None
    assert start.json["event_data"]["session_id"] == sid
    assert re.fullmatch(r"[0-9a-f]{16}", start.json["event_data"]["reader_id"])
    emu.wait_readers(sid, 1)
    ids = [emu.push(sid, result(i)) for i in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    got = [f for f in take(frames, 5)]
    assert [f.id for f in got] == ["1", "2", "3", "4", "5"]
    assert [f.json["event_data"]["response"] for f in got] == [[f"r{i}"] for i in range(5)]
    assert all(f.event == "message" and "\n" not in f.data for f in got)
    emu.destroy(sid)
    rest = until_type(frames, "sse.stream.end")
    assert [f.type for f in rest if f.type != "sse.stream.heartbeat"] == ["sse.stream.end"]
    assert rest[-1].json["event_data"]["num_messages"] == 5
    assert list(frames) == []  # the connection closes after the end frame


def test_each_connection_gets_a_new_reader_id(emu: LensEmulator) -> None:
    sid = emu.create_session()
    ids = set()
    for _ in range(3):
        with open_stream(emu, sid) as response:
            ids.add(next(frames_of(response)).json["event_data"]["reader_id"])
    assert len(ids) == 3


def test_heartbeats_follow_the_interval_with_growing_message_timeout() -> None:
    with LensEmulator(heartbeat_interval=0.05, idle_timeout=30.0) as emu:
        sid = emu.create_session()
        response = open_stream(emu, sid)
        frames = frames_of(response)
        next(frames)
        started = time.monotonic()
        beats = take(frames, 6)
        elapsed = time.monotonic() - started
        assert {b.type for b in beats} == {"sse.stream.heartbeat"}
        data = [b.json["event_data"] for b in beats]
        assert [d["message_timeout"] for d in data] == pytest.approx(
            [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
        )
        assert data[0]["session_status"] == "SESSION_STATUS_RUNNING"
        assert data[0]["num_messages"] == 0 and data[0]["num_bytes"] == 0
        assert 0.25 <= elapsed < 1.5
        # A data event resets the idle count; the next heartbeat reports it.
        emu.push(sid, result(0))
        after = [f for f in take(frames, 2)]
        assert after[0].type == "inference.result"
        assert after[1].json["event_data"]["message_timeout"] == pytest.approx(0.05)
        assert after[1].json["event_data"]["num_messages"] == 1
        response.close()


def test_idle_timeout_ends_the_stream() -> None:
    with LensEmulator(heartbeat_interval=0.05, idle_timeout=0.3) as emu:
        sid = emu.create_session()
        frames = list(frames_of(open_stream(emu, sid)))
        assert frames[0].type == "sse.stream.start"
        assert frames[-1].type == "sse.stream.end"
        assert frames[-1].json["event_data"]["reason"] == "idle_timeout"
        assert 2 <= sum(f.type == "sse.stream.heartbeat" for f in frames) <= 7


def test_last_event_id_resumes_exactly_after_the_id_then_live(emu: LensEmulator) -> None:
    sid = emu.create_session()
    emu.push_many(sid, [result(i) for i in range(10)])
    response = open_stream(emu, sid, last_event_id=4)
    frames = frames_of(response)
    assert next(frames).type == "sse.stream.start"
    assert [f.id for f in take(frames, 6)] == ["5", "6", "7", "8", "9", "10"]
    emu.push(sid, result(10))
    assert next(frames).id == "11"
    stats = emu.session_stats(sid)
    assert stats.last_event_id == "4" and stats.readers[0].last_event_id == "4"
    response.close()


def test_an_id_older_than_the_log_gets_a_gap_notice_then_the_oldest() -> None:
    with LensEmulator(log_size=5) as emu:
        sid = emu.create_session()
        emu.push_many(sid, [result(i) for i in range(10)])
        frames = frames_of(open_stream(emu, sid, last_event_id=2))
        _, notice, *rest = take(frames, 7)
        assert notice.type == "log.info" and notice.id is None
        assert "3..5" in notice.json["event_data"]["message"]
        assert [f.id for f in rest] == ["6", "7", "8", "9", "10"]


@pytest.mark.parametrize(("replay", "expected"), [("live", ["3"]), ("all", ["1", "2", "3"])])
def test_replay_mode_decides_what_a_reader_without_id_sees(
    replay: str, expected: list[str]
) -> None:
    with LensEmulator(replay=replay) as emu:  # type: ignore[arg-type]
        sid = emu.create_session()
        emu.push_many(sid, [result(0), result(1)])
        response = open_stream(emu, sid)
        frames = frames_of(response)
        next(frames)
        emu.wait_readers(sid, 1)
        emu.push(sid, result(2))
        assert [f.id for f in take(frames, len(expected))] == expected
        response.close()


def test_many_readers_each_receive_every_event(emu: LensEmulator) -> None:
    sid = emu.create_session()
    responses = [open_stream(emu, sid) for _ in range(20)]
    streams = [frames_of(r) for r in responses]
    for frames in streams:
        next(frames)
    emu.wait_readers(sid, 20)
    emu.push_many(sid, [result(i) for i in range(30)])
    emu.destroy(sid)
    for frames in streams:
        got = until_type(frames, "sse.stream.end")
        assert [f.id for f in got if f.id] == [str(i) for i in range(1, 31)]
    stats = emu.session_stats(sid)
    assert stats.connections == 20
    assert all(r.events_sent == 30 for r in stats.readers)


def test_destroyed_session_still_serves_its_log_to_a_resuming_reader(emu: LensEmulator) -> None:
    sid = emu.create_session()
    emu.push_many(sid, [result(i) for i in range(4)])
    emu.destroy(sid)
    with pytest.raises(SessionEnded):
        emu.push(sid, result(9))
    frames = list(frames_of(open_stream(emu, sid, last_event_id=2)))
    assert [f.id for f in frames] == [None, "3", "4", None]
    assert frames[-1].type == "sse.stream.end"


def test_python_api_errors_are_rxlens_errors(emu: LensEmulator) -> None:
    with pytest.raises(UnknownSession):
        emu.push("lsn-missing", result(0))
    sid = emu.create_session()
    with pytest.raises(EmulatorTimeout) as info:
        emu.wait_readers(sid, 1, timeout=0.05)
    assert isinstance(info.value, RxLensError) and isinstance(info.value, TimeoutError)
    with pytest.raises(RxLensError):
        emu.create_session("no-such-lens")


def test_raw_payloads_are_sent_verbatim(emu: LensEmulator) -> None:
    sid = emu.create_session()
    emu.push(sid, "not json at all")
    frames = frames_of(open_stream(emu, sid, last_event_id=0))
    assert take(frames, 2)[1].data == "not json at all"
    with pytest.raises(ValueError):
        emu.push(sid, "two\nlines")


# --- lifecycle ---------------------------------------------------------------------------------


def _fds() -> set[str]:
    """What each open descriptor points at (``socket:[inode]``, a path): compared as sets, a
    descriptor an earlier test left to the garbage collector and that closes meanwhile is not
    taken for a leak the other way round (a count failed 14 == 15 under load)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the directory's own descriptor, closed since
    return found


def test_close_is_prompt_and_leaks_no_threads_or_sockets() -> None:
    threads_before, fds_before = set(threading.enumerate()), _fds()
    started = time.monotonic()
    emu = LensEmulator(heartbeat_interval=30.0).start()
    assert time.monotonic() - started < 1.0
    sid = emu.create_session("machine-state", rate=50)
    emu.create_session("manual")
    silent = [raw_get(emu, f"/api/lens/sessions/consumer/{sid}") for _ in range(5)]
    for sock in silent:
        read_raw(sock, until=b"sse.stream.start")
    emu.wait_readers(sid, 5)
    keep_alive = requests.Session()  # an idle keep-alive connection must not hold close() up
    keep_alive.get(emu.base_url + "/lens/metadata", headers=emu.headers, timeout=5)
    started = time.monotonic()
    emu.close()
    assert time.monotonic() - started < 1.0
    emu.close()  # idempotent
    for sock in silent:
        sock.close()
    keep_alive.close()
    assert set(threading.enumerate()) - threads_before == set()
    assert _fds() - fds_before == set()


def test_starting_twice_is_harmless_and_a_closed_emulator_cannot_restart() -> None:
    emu = LensEmulator()
    assert emu.start() is emu.start()
    emu.close()
    with pytest.raises(RxLensError):
        emu.start()


def test_stats_count_requests_and_connections(emu: LensEmulator) -> None:
    sid = emu.create_session()
    with open_stream(emu, sid) as response:
        next(frames_of(response))
    requests.get(emu.base_url + "/lens/metadata", headers=emu.headers, timeout=5)
    stats = emu.stats
    assert stats.requests == 2 and stats.sessions == 1 and stats.sessions_running == 1


def test_raw_response_head_is_chunked_event_stream(emu: LensEmulator) -> None:
    sid = emu.create_session()
    sock = raw_get(emu, f"/v0.5/lens/sessions/consumer/{sid}")
    status, headers, body = split_response(read_raw(sock, until=b"sse.stream.start"))
    sock.close()
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"
    assert b"event: message\ndata: {" in body


# --- the log, as a law -------------------------------------------------------------------------


@given(capacity=st.integers(1, 20), n=st.integers(0, 60))
def test_event_log_keeps_the_last_capacity_events_by_id(capacity: int, n: int) -> None:
    log = EventLog(capacity)
    for i in range(1, n + 1):
        assert log.append(b"%d" % i) == i
    assert log.last_id == n
    assert log.first_id == max(1, n - capacity + 1)
    for i in range(log.first_id, n + 1):
        assert log.get(i) == b"%d" % i


# --- the emulator as a network server (rxlens serve --host) -------------------------------------
# Each request is refused in the cheap order: route, key, bounded body; every refusal is a 4xx
# JSON body, never a silent close or a body buffered without limit.


def exchange(emu: LensEmulator, request: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a new connection (kept open) and read one whole response."""
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=timeout)
    try:
        sock.sendall(request)
        raw = read_raw(sock, until=b"\r\n\r\n", timeout=timeout)
        if b"\r\n\r\n" not in raw:
            raise AssertionError(f"no answer within {timeout:g} s (got {raw[:80]!r})")
        _, headers, body = split_response(raw)
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            sock.settimeout(timeout)
            more = sock.recv(65536)
            if not more:
                break
            body += more
        return raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" + body
    finally:
        sock.close()


def json_error(raw: bytes) -> tuple[int, dict[str, object]]:
    """The status and the first error of a JSON error answer (asserts its shape)."""
    status, headers, body = split_response(raw)
    assert headers.get("content-type") == "application/json", raw[:300]
    errors = json.loads(body)["errors"]
    assert isinstance(errors[0], dict) and errors[0]["error_uid"].startswith("err-")
    return int(status.split()[1]), errors[0]


def post_head(emu: LensEmulator, path: str, *, key: bool, extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {emu.api_key}\r\n" if key else ""
    return f"POST /api{path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n".encode()


@pytest.mark.parametrize("key", [False, True])
def test_negative_content_length_is_refused_without_reading_the_body(
    emu: LensEmulator, key: bool
) -> None:
    # The connection stays open and the body keeps coming: an answer must not wait for EOF.
    request = post_head(emu, "/lens/sessions/create", key=key, extra="Content-Length: -1\r\n")
    status, _ = json_error(exchange(emu, request + b"x" * 100_000))
    assert status == (400 if key else 401)


@pytest.mark.parametrize("value", ["abc", "1e3", "0x10", " +5", "12 34", "1_000"])
def test_non_numeric_content_length_gets_400_json(emu: LensEmulator, value: str) -> None:
    request = post_head(
        emu, "/lens/sessions/create", key=True, extra=f"Content-Length: {value}\r\n"
    )
    status, error = json_error(exchange(emu, request + b"{}"))
    assert status == 400 and "Content-Length" in str(error["message"])


def test_huge_content_length_gets_413_unread(emu: LensEmulator) -> None:
    request = post_head(emu, "/lens/register", key=True, extra=f"Content-Length: {10**30}\r\n")
    status, _ = json_error(exchange(emu, request + b"{" * 1000))
    assert status == 413


def test_a_chunked_request_body_gets_411_json(emu: LensEmulator) -> None:
    extra = "Transfer-Encoding: chunked\r\n"
    request = post_head(emu, "/lens/register", key=True, extra=extra) + b"2\r\n{}\r\n0\r\n\r\n"
    status, _ = json_error(exchange(emu, request))
    assert status == 411


def test_a_request_without_a_key_spends_no_fault_budget_and_rewrites_no_header() -> None:
    with LensEmulator(heartbeat_interval=0.1) as emu:
        sid = emu.create_session()
        response = open_stream(emu, sid, last_event_id=7)
        response.close()
        emu.set_faults(Faults(fail_next=1, fail_status=503), session_id=sid)
        keyless = open_stream(emu, sid, headers={"Last-Event-ID": "99"})
        assert keyless.status_code == 401
        stats = emu.session_stats(sid)
        assert stats.last_event_id == "7" and stats.consumer_requests == 1
        assert stats.failures_injected == 0
        # The budget is still there for the client that holds the key.
        assert open_stream(emu, sid).status_code == 503


BAD_BODIES = {
    "nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "not JSON": b"\xff\xfe not json",
    "a JSON list": b"[1, 2]",
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_a_bad_json_body_gets_400_json(emu: LensEmulator, name: str) -> None:
    body = BAD_BODIES[name]
    extra = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    status, _ = json_error(
        exchange(emu, post_head(emu, "/lens/register", key=True, extra=extra) + body)
    )
    assert status == 400


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "event_data": {"session_config": "fast"}},
        {"type": "session.update", "event_data": {"session_config": [1, 2]}},
        {"type": "input_stream.set", "event_data": {"stream_config": "file.csv"}},
        {"type": "session.modify", "event_data": "HEALTHY"},
        {"type": "session.status", "event_data": [1]},
    ],
)
def test_bad_event_fields_get_400_json(emu: LensEmulator, event: dict[str, object]) -> None:
    sid = emu.create_session()
    body = json.dumps({"session_id": sid, "event": event}).encode()
    extra = f"Content-Length: {len(body)}\r\n"
    request = post_head(emu, "/lens/sessions/events/process", key=True, extra=extra) + body
    status, _ = json_error(exchange(emu, request))
    assert status == 400


@pytest.mark.parametrize(
    "request_line",
    [b"PUT /api/lens/metadata HTTP/1.1", b"GARBAGE", b"GET /api/lens/metadata HTTP/9.9"],
)
def test_unusual_requests_get_a_json_answer_not_html(
    emu: LensEmulator, request_line: bytes
) -> None:
    auth = f"Authorization: Bearer {emu.api_key}".encode()
    status, _ = json_error(exchange(emu, request_line + b"\r\nHost: x\r\n" + auth + b"\r\n\r\n"))
    assert 400 <= status < 600


def test_a_stalled_request_head_or_body_times_out() -> None:
    limits = ServerLimits(header_timeout=0.3, body_timeout=0.3)
    with LensEmulator(limits=limits) as emu:
        sock = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
        sock.sendall(b"GET /api/lens/metadata HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        assert read_raw(sock, timeout=5) == b""  # closed by the server, well before 5 s
        sock.close()
        head = post_head(emu, "/lens/register", key=True, extra="Content-Length: 100\r\n")
        status, _ = json_error(exchange(emu, head + b'{"lens_config"'))
        assert status == 408


def test_connections_past_the_limit_get_503_json_at_once() -> None:
    with LensEmulator(limits=ServerLimits(max_connections=3)) as emu:
        idle = [socket.create_connection(("127.0.0.1", emu.port), timeout=5) for _ in range(3)]
        try:
            deadline = time.monotonic() + 5
            while emu.stats.connections_open < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            status, error = json_error(exchange(emu, b"GET /api/lens/metadata HTTP/1.1\r\n\r\n"))
            assert status == 503 and error["code"] == "too_many_connections"
        finally:
            for sock in idle:
                sock.close()
        # Once the idle ones are gone, the emulator serves again.
        deadline = time.monotonic() + 5
        while emu.stats.connections_open and time.monotonic() < deadline:
            time.sleep(0.01)
        answer = requests.get(emu.base_url + "/lens/metadata", headers=emu.headers, timeout=5)
        assert answer.status_code == 200


def test_destroyed_sessions_are_freed_past_the_retention() -> None:
    with LensEmulator() as emu:
        for _ in range(130):
            emu.destroy(emu.create_session())
        assert emu.stats.sessions <= 100  # the default keeps the last 100 destroyed
        running = emu.create_session()
        assert running in emu.session_ids
    with LensEmulator(retain_seconds=0.0) as emu:
        ended = emu.create_session()
        emu.destroy(ended)
        emu.create_session()
        with pytest.raises(UnknownSession):
            emu.session_stats(ended)


# --- the API as the vendor's examples call it -------------------------------------------------


def api(emu: LensEmulator, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, emu.base_url + path, headers=emu.headers, timeout=5, **kwargs)


def process_event(emu: LensEmulator, sid: str, event: dict[str, object]) -> dict[str, object]:
    reply = api(
        emu, "POST", "/lens/sessions/events/process", json={"session_id": sid, "event": event}
    )
    assert reply.status_code == 200
    return reply.json()  # type: ignore[no-any-return]


def test_input_n_shot_modify_streams_one_result_per_class(emu: LensEmulator) -> None:
    sid = emu.create_session("machine-state", rate=0)
    response = open_stream(emu, sid)
    frames = frames_of(response)
    take(frames, 1)  # sse.stream.start
    event_data = {"input_n_shot": {"NORMAL": "n.csv", "WARNING": "w.csv"}, "csv_configs": {}}
    reply = process_event(emu, sid, {"type": "session.modify", "event_data": event_data})
    assert reply["type"] == "session.modify.response"
    first = until_type(frames, "session.modify.result")[-1]
    second = next(f for f in frames if f.type == "session.modify.result")
    response.close()
    classes = [f.json["event_data"]["query_metadata"]["class_name"] for f in (first, second)]
    assert classes == ["NORMAL", "WARNING"]
    settings = process_event(emu, sid, {"type": "session.get"})["event_data"]
    assert settings["csv_configs"] == {} and "input_n_shot" not in settings


def test_an_unknown_route_is_404_before_its_body_is_read(emu: LensEmulator) -> None:
    reply = api(emu, "POST", "/lens/no-such-route", data=b"not json at all")
    assert reply.status_code == 404
    assert reply.json()["errors"][0]["code"] == "not_found"
    assert api(emu, "POST", "/lens/metadata", data=b"x").status_code == 405


def test_a_registered_lens_runs_the_scripted_lens_its_config_names(emu: LensEmulator) -> None:
    def register(config: dict[str, object]) -> requests.Response:
        return api(emu, "POST", "/lens/register", json={"lens_config": config})

    unknown = register({"lens_name": "mine", "emulator_lens": "no-such-lens"})
    assert unknown.status_code == 400
    message = unknown.json()["errors"][0]["message"]
    assert "no-such-lens" in message and "machine-state" in message
    chosen = register({"lens_name": "mine", "emulator_lens": "alert"}).json()
    assert chosen["emulator_lens"] == "alert"
    # No emulator_lens and a name that is no scripted lens: the default scripted lens, which
    # produces results (the manual lens would produce nothing).
    default = register({"lens_name": "Custom Activity Monitor"}).json()
    assert default["emulator_lens"] == "activity-monitor"
    created = api(emu, "POST", "/lens/sessions/create", json={"lens_id": default["lens_id"]})
    sid = created.json()["session_id"]
    assert emu.session_stats(sid).lens == "activity-monitor"


def test_session_records_carry_last_update_timestamp(emu: LensEmulator) -> None:
    before = time.time()
    sid = emu.create_session("machine-state", rate=0)
    (record,) = api(emu, "GET", "/lens/sessions/metadata", params={"session_id": sid}).json()
    created_at = record["last_update_timestamp"]
    assert before <= created_at <= time.time()
    emu.step(sid, 1)
    (record,) = api(emu, "GET", "/lens/sessions/metadata", params={"session_id": sid}).json()
    assert record["last_update_timestamp"] >= created_at


# --- the state has one home ---------------------------------------------------------------------


def test_the_handler_serves_a_registry_without_the_facade() -> None:
    import ast
    from pathlib import Path

    from rxlens.emulator import LENSES
    from rxlens.emulator._registry import Registry
    from rxlens.emulator._server import EmulatorServer
    from rxlens.emulator._stream import StreamConfig

    for name in ("_server.py", "_registry.py"):
        tree = ast.parse((Path(rxlens_emulator_dir()) / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "rxlens.emulator._emulator" not in imported, name
    registry = Registry(
        api_keys=["k"],
        stream_config=StreamConfig(5.0, 60.0, "live", "mixed"),
        log_size=10,
        max_sessions=None,
        unknown_session="404",
        faults=None,
        seed=1,
    )
    server = EmulatorServer(("127.0.0.1", 0), registry)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/lens/metadata"
        answer = requests.get(url, headers={"Authorization": "Bearer k"}, timeout=5)
        assert len(answer.json()) == len(LENSES)
    finally:
        server.shutdown()
        server.server_close()
        registry.close_sessions()
        thread.join(5.0)


def rxlens_emulator_dir() -> str:
    import rxlens.emulator

    return os.path.dirname(rxlens.emulator.__file__)


# --- every request gets a JSON answer, as a law ---------------------------------------------------

#: Keys the handlers read, so generated objects reach them, and any other text.
KEYS = st.sampled_from(
    ["session_config", "stream_config", "stream_type", "input_n_shot", "class_name", "focus"]
) | st.text(max_size=8)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
EVENT_TYPES = st.sampled_from(
    [
        "session.status",
        "session.get",
        "session.modify",
        "session.update",
        "model.query",
        "input_stream.set",
        "output_stream.set",
        "session.validate",
        "nonsense",
    ]
)


@pytest.fixture(scope="module")
def shared_emu() -> LensEmulator:
    # A short body timeout: a Content-Length larger than the body sent is answered 408 soon.
    with LensEmulator(heartbeat_interval=1.0, limits=ServerLimits(body_timeout=0.2)) as e:
        yield e


@settings(max_examples=60, deadline=None)
@given(event_type=EVENT_TYPES, data=JSON_VALUES, extra=JSON_VALUES)
def test_any_event_gets_a_json_answer_never_a_server_error(
    shared_emu: LensEmulator, event_type: str, data: object, extra: object
) -> None:
    emu = shared_emu
    sid = emu.session_ids[0] if emu.session_ids else emu.create_session("machine-state", rate=0)
    event = {"type": event_type, "event_data": data, "extra": extra}
    reply = api(
        emu, "POST", "/lens/sessions/events/process", json={"session_id": sid, "event": event}
    )
    assert reply.status_code in (200, 400), reply.text
    body = reply.json()
    assert ("errors" in body) == (reply.status_code == 400)


@settings(max_examples=60, deadline=None)
@given(length=st.text(max_size=12), body=st.binary(max_size=64))
def test_any_content_length_gets_an_answer(
    shared_emu: LensEmulator, length: str, body: bytes
) -> None:
    emu = shared_emu
    value = length.encode("latin-1", "replace").replace(b"\r", b"").replace(b"\n", b"")
    head = post_head(emu, "/lens/register", key=True, extra="")[:-2]
    raw = exchange(emu, head + b"Content-Length: " + value + b"\r\n\r\n" + body)
    status = int(raw.split(b" ", 2)[1])
    assert status in (200, 400, 408, 413), raw[:200]
    assert raw.partition(b"\r\n\r\n")[2].startswith(b"{")
