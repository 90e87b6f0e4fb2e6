"""The vendor's own SDK (``archetypeai``) pointed at the emulator, calling what its examples call.

Each test follows one of the SDK's documented flows (lens status, register and run a lens,
modify a session, Machine State n-shot training, the files API) and checks that every call
returns what the SDK and its examples read from the answer, the WebSocket side included
(``sessions.connect`` / ``sessions.read`` against the emulator's ``session.read`` mailbox).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import archetypeai
import pytest

from rxlens.emulator import LensEmulator

LENS_YAML = """
lens_name: Custom Activity Monitor
lens_config:
  model_parameters:
    model_version: Newton::c2_3_7b_2508014e10af56
    focus: cars
"""


@pytest.fixture
def emu() -> Iterator[LensEmulator]:
    with LensEmulator(heartbeat_interval=0.5, seed=7) as emulator:
        yield emulator


@pytest.fixture
def client(emu: LensEmulator) -> Any:
    return archetypeai.ArchetypeAI(emu.api_key, api_endpoint=emu.base_url)


def lens_api(client: Any) -> Any:
    """``client.lens`` (the SDK marks the lens API deprecated with a FutureWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return client.lens


class Collector:
    """Drains an SDK ``ServerSideEventsReader`` with its own ``read(block=True)`` on a thread."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            for event in self.reader.read(block=True):
                with self._lock:
                    self.events.append(event)
                if event.get("type") == "sse.stream.end":
                    return

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                seen = list(self.events)
            if predicate(seen):
                return seen
            time.sleep(0.02)
        raise AssertionError(f"not seen within {timeout:g} s: {[e.get('type') for e in seen]}")

    def types(self) -> list[str]:
        with self._lock:
            return [str(e.get("type")) for e in self.events]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == event_type]


def test_lens_status_example_calls(client: Any, emu: LensEmulator) -> None:
    lens = lens_api(client)
    emu.create_session("machine-state", rate=0)
    info = lens.get_info()
    assert info["num_lenses"] == len(info["lens_ids"]) >= 5
    metadata = lens.get_metadata()
    assert {"lens_id", "lens_name", "lens_config"} <= set(metadata[0])
    session_info = lens.sessions.get_info()
    assert session_info["num_running_sessions"] == 1
    sessions = lens.sessions.get_metadata()
    assert sessions[0]["session_status"] == "SESSION_STATUS_RUNNING"
    assert isinstance(sessions[0]["last_update_timestamp"], float)


def test_register_run_modify_get_query_and_destroy(client: Any, emu: LensEmulator) -> None:
    lens = lens_api(client)
    seen: dict[str, Any] = {}

    def session_fn(session_id: str, session_endpoint: str) -> str:
        assert session_endpoint.endswith(f"/lens/sessions/{session_id}")
        reader = lens.sessions.create_sse_consumer(session_id)
        collector = Collector(reader)
        seen["collector"], seen["reader"] = collector, reader
        emu.wait_readers(session_id)

        def process(event_type: str, **event_data: Any) -> dict[str, Any]:
            event = {"type": event_type, "event_data": event_data}
            reply: dict[str, Any] = lens.sessions.process_event(session_id, event)
            assert reply["type"] == f"{event_type}.response", reply
            return reply

        # lens_modify_session.py: read the focus, change it, read it again.
        assert process("session.get")["event_data"]["focus"] == "cars"
        process("session.modify", focus="trucks")
        assert process("session.get")["event_data"]["focus"] == "trucks"
        # The Machine State example's n-shot training: one session.modify.result per class.
        process(
            "session.modify",
            input_n_shot={"NORMAL": "normal.csv", "WARNING": "warning.csv"},
            csv_configs={"window_size": 1024, "step_size": 1024},
        )
        events = collector.wait_for(lambda ev: len(of_type(ev, "session.modify.result")) == 2)
        classes = [
            e["event_data"]["query_metadata"]["class_name"]
            for e in of_type(events, "session.modify.result")
        ]
        assert classes == ["NORMAL", "WARNING"]
        # model.query answers in the POST response, as the image Q&A examples read it.
        answer = process("model.query", instruction="What is there?", focus="trucks")
        assert isinstance(answer["event_data"]["response"][0], str)
        status = process("session.status")["event_data"]
        assert status["session_status"] == "SESSION_STATUS_RUNNING"
        # The registered lens runs a scripted lens (activity monitor by default): results flow.
        collector.wait_for(lambda ev: bool(of_type(ev, "inference.result")))
        metadata = lens.sessions.get_metadata(session_id=session_id)
        assert metadata[0]["num_outputs"] >= 3
        assert metadata[0]["last_update_timestamp"] >= status["last_update_timestamp"]
        return session_id

    session_id = lens.create_and_run_lens(LENS_YAML, session_fn)
    # create_and_run_lens destroyed the session and deleted the lens; the reader saw the end.
    collector = seen["collector"]
    collector.wait_for(lambda ev: bool(of_type(ev, "sse.stream.end")))
    seen["reader"].close()  # returns at once: its worker ended with the stream
    assert "DESTROYED" in emu.session_stats(session_id).status
    assert all(m["lens_name"] != "Custom Activity Monitor" for m in lens.get_metadata())


def test_destroy_returns_the_destroyed_record(client: Any, emu: LensEmulator) -> None:
    lens = lens_api(client)
    session_id, _ = lens.create_session("lns-emu-machine-state")
    record = lens.sessions.destroy(session_id)
    assert record["session_status"] == "SESSION_STATUS_DESTROYED"


def test_clone_modify_and_delete_a_lens(client: Any) -> None:
    lens = lens_api(client)
    registered = lens.register({"lens_name": "probe", "emulator_lens": "machine-state"})
    clone = lens.clone(registered["lens_id"])
    assert clone["lens_id"] != registered["lens_id"] and clone["emulator_lens"] == "machine-state"
    modified = lens.modify(clone["lens_id"], {"lens_description": "changed"})
    assert modified["lens_config"]["lens_description"] == "changed"
    assert lens.delete(clone["lens_id"])["lens_status"] == "LENS_STATUS_DELETED"
    assert lens.get_metadata(lens_id=clone["lens_id"]) == []


def test_files_api(client: Any, tmp_path: Path) -> None:
    names = []
    for name, rows in (("normal.csv", "a,b\n1,2\n"), ("warning.csv", "a,b\n9,9\n")):
        path = tmp_path / name
        path.write_text(rows)
        uploaded = client.files.local.upload(str(path))
        assert uploaded["file_id"] == name
        names.append(name)
    info = client.files.get_info()
    assert info["num_files"] == 2
    page = client.files.get_metadata(limit=1)
    assert len(page["data"]) == 1 and page["has_more"] is True
    assert sorted(m["file_id"] for m in client.files.iter_metadata(limit=1)) == sorted(names)
    assert client.files.get_metadata(file_id="normal.csv")["file_id"] == "normal.csv"
    target = tmp_path / "copy.csv"
    assert client.files.local.download("normal.csv", str(target)) is True
    assert target.read_text() == "a,b\n1,2\n"
    client.files.local.delete("normal.csv")
    assert [m["file_id"] for m in client.files.iter_metadata()] == ["warning.csv"]


# --- the session.read mailbox over the SDK's own socket ------------------------------------------


def _in_thread(call: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Run ``call`` in a daemon thread: the SDK's read blocks forever when nothing answers."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert box, "the SDK call did not return"
    return box[0]


def test_sdk_connect_and_read_drain_an_emulator_mailbox(emu: LensEmulator, client: Any) -> None:
    lens = lens_api(client)
    session_id, endpoint = lens.create_session("lns-emu-manual")
    reply = lens.sessions.process_event(
        session_id, {"type": "output_stream.set", "event_data": {"stream_type": "mailbox_writer"}}
    )
    assert reply["type"] == "output_stream.set.response"
    emu.push_many(
        session_id,
        [{"type": "inference.result", "event_data": {"response": [f"r{i}"]}} for i in range(3)],
    )
    try:
        assert lens.sessions.connect(session_id, endpoint) is True
        first = _in_thread(lambda: lens.sessions.read(session_id))
        assert first["type"] == "session.read.response"
        messages = first["event_data"]["messages"]
        assert [m["event_data"]["response"] for m in messages] == [["r0"], ["r1"], ["r2"]]
        # The same client id has read everything; another one replays from the start.
        assert _in_thread(lambda: lens.sessions.read(session_id))["event_data"] is None
        again = _in_thread(lambda: lens.sessions.read(session_id, client_id="other"))
        assert len(again["event_data"]["messages"]) == 3
        status = _in_thread(lambda: lens.sessions.write(session_id, {"type": "session.status"}))
        assert status["session_id"] == session_id
        stats = emu.session_stats(session_id)
        assert stats.authorization_seen is True and stats.num_outputs == 3
    finally:
        lens.sessions.close()
