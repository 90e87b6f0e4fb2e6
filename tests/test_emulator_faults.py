"""Every fault mode of the emulator, observed from the client side."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from test_emulator_support import (
    dechunk,
    frames_of,
    open_stream,
    parse_frames,
    raw_get,
    read_raw,
    result,
    split_response,
    take,
)

from rxlens.emulator import LARGE_EVENT_BYTES, Faults, LensEmulator
from rxlens.errors import ConfigurationError


def _consumer(emu: LensEmulator, sid: str) -> str:
    return f"/api/lens/sessions/consumer/{sid}"


def _raw_stream(emu: LensEmulator, sid: str, *, until: bytes, **headers: str) -> bytes:
    sock = raw_get(emu, _consumer(emu, sid), headers={**emu.headers, **headers})
    try:
        return read_raw(sock, until=until, timeout=5.0)
    finally:
        sock.close()


def test_drop_after_cuts_the_next_frame_and_closes() -> None:
    with LensEmulator(faults=Faults(drop_after=3)) as emu:
        sid = emu.create_session()
        emu.push_many(sid, [result(i) for i in range(6)])
        raw = _raw_stream(emu, sid, until=b"\x00never", **{"Last-Event-ID": "0"})
        payload, complete = dechunk(split_response(raw)[2])
        assert not complete  # no terminating chunk: the connection broke
        frames = list(parse_frames(iter(payload.split(b"\n"))))
        assert [f.id for f in frames] == [None, "1", "2", "3"]
        assert payload.endswith(b"\n\n") is False  # the fourth frame is half written
        assert b"id: 4" in payload
        # requests surfaces it as a broken chunked body.
        response = open_stream(emu, sid, last_event_id=0)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            list(frames_of(response))
        assert emu.session_stats(sid).readers[0].end_reason == "dropped"


def test_drops_budget_limits_how_many_connections_break() -> None:
    with LensEmulator(faults=Faults(drop_after=1, drops=1)) as emu:
        sid = emu.create_session()
        emu.push_many(sid, [result(i) for i in range(3)])
        emu.destroy(sid)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            list(frames_of(open_stream(emu, sid, last_event_id=0)))
        # The client resumes after the last id it got: exactly the rest, then the end.
        frames = list(frames_of(open_stream(emu, sid, last_event_id=1)))
        assert [f.id for f in frames] == [None, "2", "3", None]


def _drop_position(seed: int) -> int:
    with LensEmulator(faults=Faults(drop_rate=0.2)) as emu:
        sid = emu.create_session(seed=seed)
        emu.push_many(sid, [result(i) for i in range(60)])
        raw = _raw_stream(emu, sid, until=b"\x00never", **{"Last-Event-ID": "0"})
        payload, _ = dechunk(split_response(raw)[2])
        return len(re.findall(rb"^id: ", payload, re.M))


def test_random_drops_are_deterministic_under_a_seed() -> None:
    assert _drop_position(7) == _drop_position(7)
    assert {_drop_position(s) for s in range(6)} != {_drop_position(7)}  # seeds matter


def test_stall_sends_nothing_not_even_heartbeats_then_resumes() -> None:
    faults = Faults(stall_after=1, stall_for=0.4)
    with LensEmulator(heartbeat_interval=0.05, faults=faults) as emu:
        sid = emu.create_session()
        emu.push_many(sid, [result(0), result(1)])
        sock = raw_get(emu, _consumer(emu, sid), headers={**emu.headers, "Last-Event-ID": "0"})
        first = read_raw(sock, until=b"id: 1\n", timeout=2.0)
        assert b"id: 1\n" in first
        silent = read_raw(sock, until=b"data:", timeout=0.25)
        assert silent == b""  # four heartbeat intervals without a byte
        resumed = read_raw(sock, until=b"id: 2\n", timeout=2.0)
        assert b"id: 2\n" in resumed
        sock.close()


def test_an_endless_stall_ends_when_the_emulator_closes() -> None:
    emu = LensEmulator(faults=Faults(stall_after=0)).start()
    sid = emu.create_session()
    emu.push(sid, result(0))
    sock = raw_get(emu, _consumer(emu, sid), headers={**emu.headers, "Last-Event-ID": "0"})
    read_raw(sock, until=b"sse.stream.start")
    emu.wait_readers(sid, 1)
    started = time.monotonic()
    emu.close()
    assert time.monotonic() - started < 1.0
    read_raw(sock, timeout=1.0)  # returns at EOF: the server closed the stalled connection
    sock.settimeout(0.5)
    assert sock.recv(1) == b""
    sock.close()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_next_k_requests_fail_with_the_status(status: int) -> None:
    with LensEmulator(faults=Faults(fail_next=2, fail_status=status)) as emu:
        sid = emu.create_session()
        codes = [open_stream(emu, sid).status_code for _ in range(2)]
        assert codes == [status, status]
        ok = open_stream(emu, sid)
        assert ok.status_code == 200
        ok.close()
        assert emu.stats.failures_injected == 2


def test_429_carries_retry_after() -> None:
    with LensEmulator(faults=Faults(fail_next=1, fail_status=429)) as emu:
        response = requests.get(emu.base_url + "/lens/metadata", headers=emu.headers, timeout=5)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.json()["errors"][0]["code"] == "rate_limited"


def test_session_faults_override_global_ones() -> None:
    with LensEmulator(faults=Faults(fail_next=5)) as emu:
        sid = emu.create_session(faults=Faults(fail_next=1, fail_status=502))
        assert open_stream(emu, sid).status_code == 502
        ok = open_stream(emu, sid)
        assert ok.status_code == 200  # the session's own budget is spent; global ones untouched
        ok.close()
        emu.set_faults(None, session_id=sid)
        assert open_stream(emu, sid).status_code == 503  # back to the global faults
        assert emu.get_faults() == Faults(fail_next=5)


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("not-json", lambda d: not _is_json(d)),
        ("no-type", lambda d: _is_json(d) and "type" not in json.loads(d)),
        ("bytes-wrapper", lambda d: d.startswith("b'{") and d.endswith("}'")),
    ],
)
def test_malformed_frames(kind: str, check: object) -> None:
    faults = Faults(malformed=kind, malformed_every=2)  # type: ignore[arg-type]
    with LensEmulator(faults=faults) as emu:
        sid = emu.create_session()
        emu.push_many(sid, [result(i) for i in range(4)])
        frames = take(frames_of(open_stream(emu, sid, last_event_id=0)), 5)[1:]
        assert [f.id for f in frames] == ["1", "2", "3", "4"]
        assert _is_json(frames[0].data) and _is_json(frames[2].data)
        assert check(frames[1].data) and check(frames[3].data)  # type: ignore[operator]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_crlf_line_endings_and_retry_field() -> None:
    with LensEmulator(faults=Faults(crlf=True, retry_ms=1500)) as emu:
        sid = emu.create_session()
        emu.push(sid, result(0))
        raw = _raw_stream(emu, sid, until=b"id: 1\r\n", **{"Last-Event-ID": "0"})
        payload, _ = dechunk(split_response(raw)[2])
        assert payload.startswith(b"retry: 1500\r\nevent: message\r\ndata: ")
        assert b"\r\n\r\nevent: message\r\nid: 1\r\n" in payload
        frames = list(parse_frames(iter(payload.split(b"\n"))))
        assert frames[0].retry == "1500"


def test_one_large_event() -> None:
    with LensEmulator(faults=Faults(large_event_after=1)) as emu:
        sid = emu.create_session()
        emu.push_many(sid, [result(0), result(1)])
        frames = take(frames_of(open_stream(emu, sid, last_event_id=0, timeout=10)), 4)
        assert [f.id for f in frames] == [None, "1", None, "2"]
        assert LARGE_EVENT_BYTES - 200 <= len(frames[2].data) <= LARGE_EVENT_BYTES
        assert frames[2].type == "inference.result"


def test_slow_drip_writes_one_byte_per_chunk() -> None:
    with LensEmulator(faults=Faults(slow_drip=True)) as emu:
        sid = emu.create_session()
        raw = _raw_stream(emu, sid, until=b"}\r\n1\r\n\n\r\n1\r\n\n\r\n")
        body = split_response(raw)[2]
        assert body.startswith(b"1\r\ne\r\n1\r\nv\r\n1\r\ne\r\n")
        payload, _ = dechunk(body)
        assert payload.startswith(b"event: message\ndata: {")


def test_ids_switched_off() -> None:
    with LensEmulator(faults=Faults(ids=False)) as emu:
        sid = emu.create_session()
        emu.push_many(sid, [result(0), result(1)])
        frames = take(frames_of(open_stream(emu, sid, last_event_id=0)), 3)
        assert [f.id for f in frames] == [None, None, None]
        assert frames[2].json["event_data"]["response"] == ["r1"]


def test_close_delimited_response() -> None:
    with LensEmulator(faults=Faults(close_delimited=True)) as emu:
        sid = emu.create_session()
        emu.push(sid, result(0))
        emu.destroy(sid)
        sock = raw_get(emu, _consumer(emu, sid), headers={**emu.headers, "Last-Event-ID": "0"})
        raw = read_raw(sock, timeout=5.0)  # until the server closes
        sock.close()
        _, headers, body = split_response(raw)
        assert headers["connection"] == "close"
        assert "transfer-encoding" not in headers and "content-length" not in headers
        types = [f.type for f in parse_frames(iter(body.split(b"\n")))]
        assert types == ["sse.stream.start", "inference.result", "sse.stream.end"]


def test_wrong_content_type() -> None:
    with LensEmulator(faults=Faults(content_type="text/html; charset=utf-8")) as emu:
        sid = emu.create_session()
        with open_stream(emu, sid) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"


def test_faults_set_later_apply_to_new_connections() -> None:
    with LensEmulator() as emu:
        sid = emu.create_session()
        emu.set_faults(Faults(ids=False), session_id=sid)
        emu.push(sid, result(0))
        frames = take(frames_of(open_stream(emu, sid, last_event_id=0)), 2)
        assert frames[1].id is None


# --- the value object ----------------------------------------------------------------------


def test_faults_parse_the_cli_syntax() -> None:
    parsed = Faults.parse("drop_after=5, fail-next=2,fail_status=429,crlf,ids=false,drop_rate=0.5")
    assert parsed == Faults(
        drop_after=5, fail_next=2, fail_status=429, crlf=True, ids=False, drop_rate=0.5
    )
    assert Faults.parse("") == Faults()
    with pytest.raises(ConfigurationError):
        Faults.parse("no_such_fault=1")
    with pytest.raises(ConfigurationError):
        Faults.parse("drop_after=x")


@pytest.mark.parametrize(
    "bad",
    [
        {"drop_after": -1},
        {"drop_rate": 1.5},
        {"fail_status": 418},
        {"malformed": "weird"},
        {"malformed_every": 0},
    ],
)
def test_faults_refuse_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Faults(**bad)  # type: ignore[arg-type]


_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "drop_after": st.integers(0, 100),
        "drop_rate": st.sampled_from([0.0, 0.25, 1.0]),
        "fail_next": st.integers(0, 9),
        "fail_status": st.sampled_from([429, 500, 502, 503, 504]),
        "crlf": st.booleans(),
        "ids": st.booleans(),
        "malformed": st.sampled_from(["not-json", "no-type", "bytes-wrapper"]),
        "retry_ms": st.integers(0, 10_000),
        "close_delimited": st.booleans(),
    },
)


@given(_FIELDS)
def test_parse_inverts_formatting(fields: dict[str, object]) -> None:
    faults = Faults(**fields)  # type: ignore[arg-type]
    text = ",".join(f"{k}={v}" for k, v in dataclasses.asdict(faults).items() if v is not None)
    assert Faults.parse(text) == faults
