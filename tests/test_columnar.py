"""rxlens.columnar.load_recording: the same values as the typed path, filters, damaged files."""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st

from rxlens import to_dataframe
from rxlens.columnar import COLUMNS, load_recording
from rxlens.events import Heartbeat, InferenceResult, LensEvent, MalformedEvent, StreamStart
from rxlens.recording import RecordingFormatError, RecordingIOError, read_recording
from rxlens.sinks import collect, to_jsonl

BASE = 1741843200.0


def machine(label: str, i: int, sid: str, scores: dict[str, Any] | None = None) -> LensEvent:
    return InferenceResult(
        [label, scores if scores is not None else {"HEALTHY": 5 - i % 6, "BROKEN": i % 6}],
        query_metadata={
            "query_timestamp": BASE + i,
            "query_metadata": {"read_index": i * 100, "window_size": 100},
        },
        session_id=sid,
        id=str(i),
        received_at=BASE + 1000 + i * 0.5,
    )


def events() -> list[LensEvent]:
    out: list[LensEvent] = [StreamStart(session_id="s1", reader_id="r", received_at=BASE + 999)]
    for i in range(12):
        out.append(machine("BROKEN" if i % 3 else "HEALTHY", i, "s1" if i % 2 else "s2"))
        if i % 5 == 4:
            out.append(Heartbeat(session_id="s1", received_at=BASE + 1000 + i * 0.5 + 0.1))
    out.append(
        InferenceResult(
            ["Person walks."],
            query_metadata={"sensor_timestamp": "00:00:05"},
            received_at=BASE + 1100,
        )
    )
    return out


def write(path: Path, items: list[LensEvent]) -> Path:
    collect(reactivex.from_iterable(items).pipe(to_jsonl(path)))
    return path


def plain(series: pd.Series) -> list[Any]:
    return [None if (v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))) else v
            for v in series.astype(object)]


def test_same_values_as_the_typed_path(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", events())
    fast = load_recording(path)
    typed = to_dataframe(read_recording(path))
    assert list(fast.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(fast) == len(typed)
    for column in ("session_id", "id", "type", "text", "sensor_timestamp"):
        assert plain(fast[column]) == plain(typed[column]), column
    assert (fast["received_at"] == typed["received_at"]).all()
    assert fast["read_index"].equals(typed["read_index"])
    expected_query = [getattr(e, "query_timestamp", None) for e in read_recording(path)]
    assert plain(fast["query_timestamp"]) == expected_query
    # Scores: one float column per class, equal to the typed scores where a result has them.
    for row, scores in enumerate(typed["scores"]):
        for name in ("HEALTHY", "BROKEN"):
            value = fast[f"score.{name}"].iloc[row]
            if scores is None:
                assert math.isnan(value)
            else:
                assert value == scores[name]


def test_filters_by_type_session_and_time(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", events())
    results = load_recording(path, types="inference.result")
    assert set(results["type"].astype(str)) == {"inference.result"}
    s1 = load_recording(path, types=["inference.result"], sessions="s1")
    assert set(s1["session_id"].astype(str)) == {"s1"} and len(s1) == 6
    window = load_recording(path, start=BASE + 1001, end=BASE + 1003)
    ats = window["received_at"].map(lambda t: t.timestamp()).tolist()
    assert ats and all(BASE + 1001 <= t < BASE + 1003 for t in ats)
    start = datetime.fromtimestamp(BASE + 2, timezone.utc)
    sensor = load_recording(path, start=start, end=BASE + 5, time="sensor")
    assert sensor["query_timestamp"].tolist() == [BASE + 2, BASE + 3, BASE + 4]


@given(
    labels=st.lists(st.sampled_from(["A", "B", "unknown"]), max_size=30),
    sessions=st.lists(st.sampled_from(["s1", "s2"]), min_size=30, max_size=30),
    low=st.floats(0, 30),
    span=st.floats(0, 30),
)
@settings(max_examples=40, deadline=None)
def test_filters_agree_with_filtering_the_typed_frame(
    tmp_path_factory: pytest.TempPathFactory,
    labels: list[str],
    sessions: list[str],
    low: float,
    span: float,
) -> None:
    items = [
        machine(label, i, sessions[i], scores={label: 3}) for i, label in enumerate(labels)
    ]
    path = write(tmp_path_factory.mktemp("c") / "r.jsonl", items)
    fast = load_recording(path, sessions="s1", start=BASE + low, end=BASE + low + span,
                          time="sensor")
    expected = [
        e.id for e in items
        if e.session_id == "s1" and BASE + low <= (e.query_timestamp or 0) < BASE + low + span
    ]
    assert fast["id"].tolist() == expected


def test_malformed_frames_are_rows_not_errors(tmp_path: Path) -> None:
    bad = MalformedEvent("{not json", {"_json": ["bad"]}, received_at=BASE)
    path = write(tmp_path / "r.jsonl", [bad, machine("A", 1, "s1")])
    frame = load_recording(path)
    assert plain(frame["type"]) == ["rxlens.malformed", "inference.result"]
    assert plain(frame["text"]) == [None, "A"]


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [machine("A", 1, "s1"), machine("B", 2, "s1")])
    text = path.read_text()
    path.write_text(text[: len(text) - 20])
    with pytest.warns(RuntimeWarning, match="torn last line"):
        frame = load_recording(path)
    assert plain(frame["text"]) == ["A"]


def test_a_valid_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [machine("A", 1, "s1")])
    path.write_text(path.read_text().rstrip("\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_recording(path)) == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "r.jsonl:2: not JSON"),
        ("[1, 2]", "r.jsonl:2: a record is a JSON object"),
        ('{"v": 2, "raw": "{}"}', "r.jsonl:2: unknown recording version 2"),
        ('{"v": 1, "raw": 5, "received_at": 1.0, "id": null, "session_id": null}', "r.jsonl:2"),
        ('{"v": 1, "raw": "{}", "received_at": "x", "id": null, "session_id": null}', "r.jsonl:2"),
    ],
)
def test_a_bad_line_names_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "r.jsonl", [machine("A", 1, "s1"), machine("B", 2, "s1")])
    first, second = path.read_text().splitlines()
    path.write_text(f"{first}\n\n{line}\n{second}\n".replace("\n\n", "\n", 1))
    with pytest.raises(RecordingFormatError, match=message):
        load_recording(path)


def test_blank_lines_keep_line_numbers_right(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [machine("A", 1, "s1")])
    path.write_text(path.read_text() + "\n\nnot json\n")
    with pytest.raises(RecordingFormatError, match=r"r\.jsonl:4: not JSON"):
        load_recording(path)


def test_missing_file_is_a_recording_io_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingIOError):
        load_recording(tmp_path / "missing.jsonl")


def test_bad_arguments(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [machine("A", 1, "s1")])
    with pytest.raises(ValueError):
        load_recording(path, time="wall")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        load_recording(path, output="arrow")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        load_recording(path, start=datetime(2025, 1, 1))


def test_key_like_text_in_a_recording_is_only_data(tmp_path: Path) -> None:
    # Nothing is evaluated: a frame is only ever decoded as JSON.
    raw = json.dumps({"type": "inference.result", "event_data": {"response": ["__import__('os')"]}})
    record = {"v": 1, "id": None, "received_at": BASE, "session_id": None,
              "type": "inference.result", "raw": raw}
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert plain(load_recording(path)["text"]) == ["__import__('os')"]
