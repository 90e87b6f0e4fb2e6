"""collect, to_dataframe and to_jsonl."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import reactivex
from reactivex import operators as ops
from reactivex.disposable import Disposable
from reactivex.scheduler import TimeoutScheduler
from reactivex.subject import Subject

from rxlens import sinks
from rxlens.errors import RxLensError
from rxlens.events import Heartbeat, LensEvent, from_payload
from rxlens.recording import RecordingError, read_recording
from rxlens.sinks import CollectTimeout, MissingDependency, collect, to_dataframe, to_jsonl


def tracked(source: reactivex.Observable[Any]) -> tuple[reactivex.Observable[Any], list[str]]:
    """``source`` plus a log of its subscriptions and disposals."""
    log: list[str] = []

    def subscribe(observer: Any, scheduler: Any = None) -> Any:
        log.append("subscribed")
        inner = source.subscribe(observer, scheduler=scheduler)
        return Disposable(lambda: (log.append("disposed"), inner.dispose()))

    return reactivex.create(subscribe), log


# --- collect -----------------------------------------------------------------------------------


def test_collect_until_completion() -> None:
    source, log = tracked(reactivex.of(1, 2, 3))
    assert collect(source) == [1, 2, 3]
    assert log == ["subscribed", "disposed"]


def test_collect_n_stops_even_an_endless_synchronous_source() -> None:
    source, log = tracked(reactivex.from_iterable(iter(int, 1)))  # zeros, forever
    assert collect(source, n=5) == [0, 0, 0, 0, 0]
    assert log[-1] == "disposed"
    assert collect(reactivex.never(), n=0) == []


def test_collect_seconds_returns_what_arrived_and_disposes() -> None:
    subject: Subject[int] = Subject()
    source, log = tracked(subject)
    threading.Timer(0.01, subject.on_next, (7,)).start()
    assert collect(source, seconds=0.3) == [7]
    assert log == ["subscribed", "disposed"]
    assert not subject.observers


def test_collect_timeout_raises_with_the_items() -> None:
    source = reactivex.concat(reactivex.of("a"), reactivex.never())
    with pytest.raises(CollectTimeout) as info:
        collect(source, n=3, timeout=0.05)
    assert info.value.items == ["a"]
    assert isinstance(info.value, RxLensError) and isinstance(info.value, TimeoutError)
    assert "3 items" in str(info.value)


def test_collect_timeout_before_seconds_raises() -> None:
    with pytest.raises(CollectTimeout):
        collect(reactivex.never(), seconds=5, timeout=0.05)


def test_collect_has_a_default_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks, "COLLECT_TIMEOUT", 0.05)
    with pytest.raises(CollectTimeout, match="completion"):
        collect(reactivex.never())


def test_collect_raises_the_stream_error() -> None:
    boom = ValueError("boom")
    with pytest.raises(ValueError, match="boom"):
        collect(reactivex.concat(reactivex.of(1), reactivex.throw(boom)))


def test_collect_from_a_worker_thread_with_a_timer_source() -> None:
    result: list[Any] = []
    source = reactivex.interval(0.005, scheduler=TimeoutScheduler.singleton())
    worker = threading.Thread(target=lambda: result.append(collect(source, n=4, timeout=5)))
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert result == [[0, 1, 2, 3]]


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"n": True}, {"seconds": 0}, {"timeout": -1.0}])
def test_collect_rejects_bad_bounds(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        collect(reactivex.empty(), **kwargs)


# --- to_dataframe ------------------------------------------------------------------------------


def machine(label: str, read_index: int, sid: str) -> LensEvent:
    payload = {
        "type": "inference.result",
        "event_data": {
            "response": [label, {"HEALTHY": 3, "BROKEN": 2}],
            "query_metadata": {"query_metadata": {"read_index": read_index}},
        },
    }
    event = from_payload(json.dumps(payload), id=str(read_index), received_at=1741843200.5)
    return dataclasses.replace(event, session_id=sid)


def test_to_dataframe_columns_and_types() -> None:
    video = from_payload(
        '{"type":"inference.result","event_data":{"response":["Stirring"],'
        '"query_metadata":{"sensor_timestamp":"00:02:15"}}}',
        received_at=1741843201.0,
    )
    events = [
        machine("HEALTHY", 100, "s1"),
        video,
        Heartbeat(session_id="s2", received_at=1741843202.0),
    ]
    frame = to_dataframe(reactivex.from_iterable(events))
    assert list(frame.columns) == list(sinks.COLUMNS)
    assert len(frame) == 3
    assert str(frame["received_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["received_at"][0].timestamp() == 1741843200.5
    assert list(frame["type"]) == ["inference.result", "inference.result", "sse.stream.heartbeat"]
    assert (
        frame["text"][0] == "HEALTHY"
        and frame["text"][1] == "Stirring"
        and pd.isna(frame["text"][2])
    )
    assert frame["scores"][0] == {"HEALTHY": 3.0, "BROKEN": 2.0}
    assert frame["sensor_timestamp"][1] == "00:02:15"
    assert str(frame["read_index"].dtype) == "Int64" and frame["read_index"][0] == 100
    assert frame["read_index"].isna().tolist() == [False, True, True]
    assert list(frame["session_id"].fillna("-")) == ["s1", "-", "s2"]
    assert frame["id"][0] == "100"
    assert frame["event"][1] is video


def test_to_dataframe_of_a_list_and_of_nothing() -> None:
    assert len(to_dataframe([machine("A", 0, "s")])) == 1
    empty = to_dataframe([])
    assert list(empty.columns) == list(sinks.COLUMNS) and len(empty) == 0


def test_to_dataframe_without_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependency, match=r"pip install .*\[pandas\]'"):
        to_dataframe([])


# --- to_jsonl ----------------------------------------------------------------------------------


def test_to_jsonl_writes_flushed_lines_before_passing_events_on(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    events = [machine("A", i, "s") for i in range(3)]
    lines_when_seen: list[int] = []

    def look(event: LensEvent) -> None:
        lines_when_seen.append(len(path.read_text().splitlines()))

    out = collect(reactivex.from_iterable(events).pipe(to_jsonl(path), ops.do_action(look)))
    assert out == events
    assert lines_when_seen == [1, 2, 3]
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in records] == ["0", "1", "2"]
    assert all(r["v"] == 1 and r["type"] == "inference.result" for r in records)
    assert records[0]["raw"] == events[0].raw
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert list(read_recording(path)) == events


def test_to_jsonl_truncates_or_appends(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    collect(reactivex.of(machine("A", 1, "s")).pipe(to_jsonl(path)))
    collect(reactivex.of(machine("B", 2, "s")).pipe(to_jsonl(path)))
    assert [e.text for e in read_recording(path)] == ["B"]
    collect(reactivex.of(machine("C", 3, "s")).pipe(to_jsonl(path, append=True)))
    assert [e.text for e in read_recording(path)] == ["B", "C"]


def test_to_jsonl_refuses_non_events_and_unsubscribes(tmp_path: Path) -> None:
    source, log = tracked(reactivex.of(machine("A", 1, "s"), "text", machine("B", 2, "s")))
    with pytest.raises(RecordingError, match="Lens events"):
        collect(source.pipe(to_jsonl(tmp_path / "rec.jsonl")))
    assert "disposed" in log
    assert [e.text for e in read_recording(tmp_path / "rec.jsonl")] == ["A"]


def test_to_jsonl_unwritable_path_errors_the_subscription(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot open"):
        collect(
            reactivex.of(machine("A", 1, "s")).pipe(to_jsonl(tmp_path / "missing" / "rec.jsonl"))
        )


def test_to_jsonl_forwards_errors_and_closes_on_dispose(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    with pytest.raises(ValueError, match="late"):
        collect(
            reactivex.concat(
                reactivex.of(machine("A", 1, "s")), reactivex.throw(ValueError("late"))
            ).pipe(to_jsonl(path))
        )
    assert len(read_recording_list(path)) == 1
    subject: Subject[LensEvent] = Subject()
    sub = subject.pipe(to_jsonl(path)).subscribe()
    subject.on_next(machine("B", 2, "s"))
    sub.dispose()
    subject.on_next(machine("C", 3, "s"))  # after disposal: not written
    assert [e.text for e in read_recording(path)] == ["B"]


def read_recording_list(path: Path) -> list[LensEvent]:
    return list(read_recording(path))
