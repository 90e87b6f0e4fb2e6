"""Event time: windows, debounce, rate and changes driven by the events' own times.

Pure parts run item by item (no scheduler at all); the law runs a recording through
``rxlens.replay`` at several speeds in virtual time and asks for identical answers.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as ops
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.events import Heartbeat, InferenceResult
from rxlens.operators import (
    Change,
    Window,
    Windowed,
    changes,
    label_counts,
    majority_vote,
    mean_scores,
    only_results,
    rate,
    rising_edge,
    window_results,
)
from rxlens.operators._event_time import EventTimeWindows, received_time, sensor_time
from rxlens.recording import encode_record, replay


@dataclass(frozen=True)
class Item:
    name: str
    t: float | None
    session_id: str | None = None
    label: str | None = None


def t_of(item: Item) -> float | None:
    return item.t


def run(items: list[Any], *operators: Any) -> list[Any]:
    out: list[Any] = []
    errors: list[Exception] = []
    reactivex.from_iterable(items).pipe(*operators).subscribe(out.append, errors.append)
    if errors:
        raise errors[0]
    return out


def shape(windows: list[Window[Item]]) -> list[tuple[Any, ...]]:
    return [(w.start, w.end, [i.name for i in w], w.late) for w in windows]


# --- windows -------------------------------------------------------------------------------------


def test_docstring_marble_late_event_is_counted_on_the_next_window() -> None:
    items = [Item("a", 1), Item("b", 2), Item("c", 4), Item("d", 1), Item("e", 7)]
    windows = run(items, window_results(seconds=3, time=t_of))
    assert shape(windows) == [
        (0.0, 3.0, ["a", "b"], 0),
        (3.0, 6.0, ["c"], 1),
        (6.0, 9.0, ["e"], 0),
    ]
    assert [i.name for i in windows[1].late_results] == ["d"]


def test_allowed_lateness_keeps_a_window_open_for_a_late_event() -> None:
    items = [Item("a", 1), Item("b", 2), Item("c", 4), Item("d", 1), Item("e", 7)]
    windows = run(items, window_results(seconds=3, time=t_of, allowed_lateness=1.5))
    assert shape(windows) == [
        (0.0, 3.0, ["a", "b", "d"], 0),
        (3.0, 6.0, ["c"], 0),
        (6.0, 9.0, ["e"], 0),
    ]


def test_quiet_spans_give_empty_windows_and_the_end_flushes_the_last() -> None:
    items = [Item("a", 0.5), Item("b", 9.9)]
    windows = run(items, window_results(seconds=3, time=t_of))
    assert shape(windows) == [
        (0.0, 3.0, ["a"], 0),
        (3.0, 6.0, [], 0),
        (6.0, 9.0, [], 0),
        (9.0, 12.0, ["b"], 0),
    ]


def test_windows_close_on_the_watermark_not_at_the_end() -> None:
    machine: EventTimeWindows[str] = EventTimeWindows(2.0, None, 0.0)
    assert machine.push("a", 0.0) == []
    assert machine.push("b", 1.9) == []
    closed = machine.push("c", 2.0)  # the window [0, 2) has passed
    assert [(w.start, list(w)) for w in closed] == [(0.0, ["a", "b"])]
    assert [(w.start, list(w)) for w in machine.flush()] == [(2.0, ["c"])]
    assert machine.flush() == []


def test_sliding_event_time_windows() -> None:
    items = [Item("a", 0.5), Item("b", 1.5), Item("c", 2.5)]
    windows = run(items, window_results(seconds=2, slide=1, time=t_of))
    assert shape(windows) == [
        (-1.0, 1.0, ["a"], 0),
        (0.0, 2.0, ["a", "b"], 0),
        (1.0, 3.0, ["b", "c"], 0),
        (2.0, 4.0, ["c"], 0),
    ]


@pytest.mark.parametrize(
    "t, seconds, slide",
    # Where (t - seconds) / slide rounds off an integer, so the first window needs a correction.
    # Near the epoch the first window has a negative index.
    [
        (0.7, 0.3, 0.1),
        (0.9, 0.3, 0.1),
        (1.8, 0.1, 0.1),
        (2.0, 0.1, 0.1),
        (0.5, 1.0, 0.5),
        (0.2, 1.0, 0.5),
        (0.1, 0.4, 0.1),
    ],
)
def test_an_item_is_in_exactly_the_windows_whose_bounds_hold_it(
    t: float, seconds: float, slide: float
) -> None:
    windows = run([Item("a", t)], window_results(seconds=seconds, slide=slide, time=t_of))
    expected = [k * slide for k in range(-50, 50) if k * slide <= t < k * slide + seconds]
    assert [w.start for w in windows] == expected
    assert all(len(w) == 1 for w in windows)


def test_an_item_at_the_end_of_a_window_before_the_epoch_is_not_in_it() -> None:
    # [-0.25, 0.15) ends at 0.15 (the float sum is 0.15000000000000002): the item is not in it.
    windows = run([Item("a", 0.15)], window_results(seconds=0.4, slide=0.25, time=t_of))
    assert [(w.start, w.end) for w in windows] == [(0.0, 0.4)]


def test_a_machine_without_items_flushes_nothing() -> None:
    assert EventTimeWindows(1.0, None, 0.0).flush() == []
    assert run([], window_results(seconds=1, time=t_of)) == []


def test_a_window_is_a_read_only_sequence_of_its_results() -> None:
    window = Window(results=("a", "b", "c"), start=0.0, end=1.0, late_results=("z",))
    assert (window[0], window[-1], window[1:]) == ("a", "c", ("b", "c"))
    assert list(window) == ["a", "b", "c"] and len(window) == 3
    assert "late_results" not in repr(window) and "'a'" in repr(window)
    assert (Window().late, Window().late_results, Window().session_id) == (0, (), None)
    assert Windowed("v") == Windowed("v", None, None, None, 0, 0)


def test_items_without_a_time_take_the_latest_time_seen() -> None:
    items = [Item("x", None), Item("a", 1), Item("y", None), Item("b", 4)]
    windows = run(items, window_results(seconds=3, time=t_of))
    assert shape(windows) == [(0.0, 3.0, ["x", "a", "y"], 0), (3.0, 6.0, ["b"], 0)]


def test_items_without_any_time_are_still_emitted() -> None:
    windows = run([Item("x", None)], window_results(seconds=3, time=t_of))
    assert [(w.start, w.end, len(w)) for w in windows] == [(None, None, 1)]


@given(
    times=st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=40),
    seconds=st.floats(min_value=0.5, max_value=10),
    lateness=st.floats(min_value=0, max_value=20),
)
@settings(max_examples=150, deadline=None)
def test_tumbling_event_time_windows_hold_every_item_exactly_once(
    times: list[float], seconds: float, lateness: float
) -> None:
    items = [Item(str(i), t) for i, t in enumerate(times)]
    windows = run(items, window_results(seconds=seconds, time=t_of, allowed_lateness=lateness))
    seen = [i.name for w in windows for i in (*w.results, *w.late_results)]
    assert sorted(seen, key=int) == [i.name for i in items]
    for w in windows:
        assert w.start is not None and w.end is not None
        for item in w.results:
            assert item.t is not None and w.start <= item.t < w.end
    starts = [w.start for w in windows]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_time_function_errors_are_sent_as_on_error() -> None:
    def bad(_: Any) -> float:
        raise KeyError("no time")

    with pytest.raises(KeyError):
        run([Item("a", 1)], window_results(seconds=1, time=bad))
    with pytest.raises(TypeError, match="finite number"):
        run([Item("a", 1)], window_results(seconds=1, time=lambda _: "soon"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 3, "time": "received"},
        {"count": 3, "seconds": 1, "time": "received"},
        {"seconds": 1, "time": "wall"},
        {"seconds": 1, "time": "received", "allowed_lateness": -1},
    ],
)
def test_bad_event_time_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        window_results(**kwargs)


def test_event_time_windows_forward_a_source_error_and_drop_the_open_windows() -> None:
    scheduler = TestScheduler()
    error = ValueError("source failed")
    source = scheduler.create_hot_observable(
        ReactiveTest.on_next(210, Item("a", 1)),
        ReactiveTest.on_next(220, Item("b", 4)),  # closes [0, 3); [3, 6) stays open
        ReactiveTest.on_error(230, error),
    )
    observer = scheduler.start(lambda: source.pipe(window_results(seconds=3, time=t_of)))
    assert [(m.time, m.value.kind) for m in observer.messages] == [(220, "N"), (230, "E")]
    assert shape([observer.messages[0].value.value]) == [(0.0, 3.0, ["a"], 0)]
    assert observer.messages[1].value.exception is error


def test_event_time_windows_flush_then_complete() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        ReactiveTest.on_next(210, Item("a", 1)),
        ReactiveTest.on_completed(230),
    )
    observer = scheduler.start(lambda: source.pipe(window_results(seconds=3, time=t_of)))
    assert [(m.time, m.value.kind) for m in observer.messages] == [(230, "N"), (230, "C")]


def test_the_time_function_is_not_called_again_after_it_failed() -> None:
    # A source that emits as it is subscribed goes on after the error: the subscription to
    # dispose does not exist yet.
    calls: list[str] = []

    def fails_on_b(item: Item) -> float | None:
        calls.append(item.name)
        if item.name == "b":
            raise KeyError("no time")
        return item.t

    errors: list[Exception] = []
    completed: list[bool] = []
    def emit(observer: Any, _: Any = None) -> Any:
        for item in (Item("a", 1), Item("b", 2), Item("c", 9)):
            observer.on_next(item)
        observer.on_completed()

    reactivex.create(emit).pipe(window_results(seconds=3, time=fails_on_b)).subscribe(
        on_error=errors.append, on_completed=lambda: completed.append(True)
    )
    assert calls == ["a", "b"]
    assert [type(e) for e in errors] == [KeyError] and completed == []


def test_disposing_event_time_windows_unsubscribes_from_the_source() -> None:
    subject: Subject[Item] = Subject()
    calls: list[str] = []

    def timed(item: Item) -> float | None:
        calls.append(item.name)
        return item.t

    subscription = subject.pipe(window_results(seconds=3, time=timed)).subscribe()
    subject.on_next(Item("a", 1))
    subscription.dispose()
    subject.on_next(Item("b", 2))
    assert calls == ["a"] and subject.observers == []


def test_without_time_windows_are_still_plain_lists() -> None:
    assert run(["a", "b", "c"], window_results(count=2)) == [["a", "b"], ["c"]]


# --- per session, and aggregates that keep the window's context ----------------------------------


def test_per_session_windows_each_session_separately_with_its_own_watermark() -> None:
    items = [
        Item("a1", 0.5, "A", "HEALTHY"),
        Item("b1", 0.7, "B", "BROKEN"),
        Item("a2", 1.2, "A", "HEALTHY"),
        Item("b2", 0.9, "B", "BROKEN"),  # on time for B, whatever A's clock says
        Item("b3", 1.5, "B", "HEALTHY"),
    ]
    windows = run(items, window_results(seconds=1, time=t_of, per_session=True))
    assert [(w.session_id, w.start, [i.name for i in w], w.late) for w in windows] == [
        ("A", 0.0, ["a1"], 0),
        ("B", 0.0, ["b1", "b2"], 0),
        ("A", 1.0, ["a2"], 0),
        ("B", 1.0, ["b3"], 0),
    ]
    votes = run(items, window_results(seconds=1, time=t_of, per_session=True), majority_vote())
    assert votes == [
        Windowed("HEALTHY", "A", 0.0, 1.0, 1, 0),
        Windowed("BROKEN", "B", 0.0, 1.0, 2, 0),
        Windowed("HEALTHY", "A", 1.0, 2.0, 1, 0),
        Windowed("HEALTHY", "B", 1.0, 2.0, 1, 0),
    ]


def test_per_session_count_windows_without_time() -> None:
    items = [Item("a1", None, "A"), Item("b1", None, "B"), Item("a2", None, "A")]
    windows = run(items, window_results(count=2, per_session=True))
    assert [(w.session_id, [i.name for i in w], w.start) for w in windows] == [
        ("A", ["a1", "a2"], None),
        ("B", ["b1"], None),
    ]


def test_counts_and_means_keep_the_window_context() -> None:
    results = [
        InferenceResult(["A", {"A": 3, "B": 2}], received_at=10.2, session_id="s"),
        InferenceResult(["A", {"A": 5}], received_at=10.4, session_id="s"),
    ]
    counts = run(results, window_results(seconds=1, time="received"), label_counts())
    means = run(results, window_results(seconds=1, time="received"), mean_scores())
    assert [(c.value, c.start, c.end, c.size) for c in counts] == [({"A": 2}, 10.0, 11.0, 2)]
    assert [(m.value, m.session_id) for m in means] == [({"A": 4.0, "B": 2.0}, None)]
    # Plain lists still give plain values.
    assert run([["A", "A", "B"]], majority_vote()) == ["A"]


@dataclass(frozen=True)
class Stamped:
    query_timestamp: Any = None
    sensor_timestamp: Any = None
    received_at: Any = None


@pytest.mark.parametrize(
    "stamped, expected",
    [
        (Stamped(query_timestamp=100), 100.0),
        (Stamped(query_timestamp=True, sensor_timestamp=7), 7.0),  # a bool is no time
        (Stamped(query_timestamp=math.nan, sensor_timestamp=7), 7.0),
        (Stamped(query_timestamp=10**400, sensor_timestamp=7), 7.0),  # past any float
        (Stamped(sensor_timestamp=10**400), None),
        (Stamped(sensor_timestamp="90"), 90.0),
        (Stamped(sensor_timestamp=" 01:30 "), 90.0),
        (Stamped(sensor_timestamp="1:00:00"), 3600.0),
        (Stamped(sensor_timestamp="1:00:00:00"), None),
        (Stamped(sensor_timestamp=""), None),
        (Stamped(sensor_timestamp="soon"), None),
        (Stamped(sensor_timestamp="inf:00"), None),
        (Stamped(), None),
    ],
)
def test_sensor_time_takes_only_finite_numbers_and_clock_positions(
    stamped: Stamped, expected: float | None
) -> None:
    value = sensor_time(stamped)
    assert value == expected
    assert value is None or type(value) is float


def test_received_time_is_a_float_or_none() -> None:
    assert [received_time(Stamped(received_at=v)) for v in (5, 2.5, "5", None)] == [
        5.0,
        2.5,
        None,
        None,
    ]
    assert type(received_time(Stamped(received_at=5))) is float


def test_sensor_and_received_times_give_their_own_windows() -> None:
    result = InferenceResult(["A"], query_metadata={"query_timestamp": 100.5}, received_at=7.2)
    by_sensor = run([result], window_results(seconds=1, time="sensor"))
    by_received = run([result], window_results(seconds=1, time="received"))
    assert [(w.start, w.end) for w in by_sensor] == [(100.0, 101.0)]
    assert [(w.start, w.end) for w in by_received] == [(7.0, 8.0)]


def test_sensor_time_reads_query_timestamp_then_sensor_timestamp() -> None:
    with_query = InferenceResult(["A"], query_metadata={"query_timestamp": 100.5})
    video = InferenceResult(["x"], query_metadata={"sensor_timestamp": "00:01:05"})
    offset = InferenceResult(["x"], query_metadata={"sensor_timestamp": 7.5})
    assert [sensor_time(e) for e in (with_query, video, offset)] == [100.5, 65.0, 7.5]
    assert sensor_time(Heartbeat(session_id="s")) is None


# --- rising_edge, rate, changes ---------------------------------------------------------


def test_event_time_debounce_confirms_on_a_later_item_not_on_a_timer() -> None:
    items = [
        Item("T", 1),
        Item("F", 2),  # flapped back within 3: nothing
        Item("T", 5),
        Item("T", 7),
        Item("T", 8),  # 3 after the rise at 5: the rise at 5 is emitted here
        Item("F", 12),
        Item("T", 14),  # F held less than 3: never re-armed
        Item("T", 20),
    ]
    fired = run(items, rising_edge(lambda i: i.name == "T", debounce=3, time=t_of))
    assert [i.t for i in fired] == [5]


def test_event_time_debounce_drops_a_rise_pending_at_the_end() -> None:
    items = [Item("F", 1), Item("T", 2), Item("T", 3)]
    assert run(items, rising_edge(lambda i: i.name == "T", debounce=3, time=t_of)) == []


def test_rising_edge_per_session_does_not_mix_sessions() -> None:
    items = [
        Item("T", 1, "A"),
        Item("F", 1, "B"),
        Item("T", 2, "A"),  # pooled, A's alert would have re-armed on B's F
        Item("T", 3, "B"),
    ]
    pooled = run(items, rising_edge(lambda i: i.name == "T"))
    split = run(items, rising_edge(lambda i: i.name == "T", per_session=True))
    assert [(i.session_id, i.t) for i in pooled] == [("A", 1), ("A", 2)]  # B never alerts
    assert [(i.session_id, i.t) for i in split] == [("A", 1), ("B", 3)]


def test_event_time_rate_counts_per_span_including_quiet_ones() -> None:
    items = [Item("a", 0.1), Item("b", 0.2), Item("c", 2.5)]
    assert run(items, rate(seconds=1, time=t_of)) == [2.0, 0.0, 1.0]


def test_changes_in_event_time_are_records_with_how_long_a_label_lasted() -> None:
    items = [
        Item("1", 1, "A", "HEALTHY"),
        Item("2", 2, "A", "HEALTHY"),
        Item("3", 3, "A", "BROKEN"),
        Item("4", 6, "A", "HEALTHY"),
    ]
    found = run(items, changes(time=t_of))
    assert [(c.label, c.previous, c.at, c.since) for c in found] == [
        ("HEALTHY", None, 1, None),
        ("BROKEN", "HEALTHY", 3, 1),
        ("HEALTHY", "BROKEN", 6, 3),
    ]
    assert all(isinstance(c, Change) and c.session_id == "A" for c in found)


def test_changes_per_session() -> None:
    items = [Item("1", 1, "A", "X"), Item("2", 1, "B", "Y"), Item("3", 2, "A", "X")]
    assert [i.name for i in run(items, changes())] == ["1", "2", "3"]
    assert [i.name for i in run(items, changes(per_session=True))] == ["1", "2"]


# --- the law: replay speed does not change event-time answers ------------------------------


LABELS = ("HEALTHY", "BROKEN")


def write_recording(path: str, gaps: list[float], labels: list[int], sessions: list[int]) -> None:
    at = 1741843200.0
    with open(path, "w", encoding="utf-8") as handle:
        for gap, label, session in zip(gaps, labels, sessions, strict=False):
            at += gap
            event = InferenceResult(
                [LABELS[label], {LABELS[label]: 4, LABELS[1 - label]: 1}],
                query_metadata={"query_timestamp": at},
                received_at=at,
                session_id=f"machine-{session}",
            )
            handle.write(encode_record(event) + "\n")


def analyse(path: str, speed: float | None) -> tuple[Any, ...]:
    scheduler = TestScheduler()
    results = replay(path, speed=speed, scheduler=scheduler).pipe(only_results(), ops.publish())
    windows: list[Window[Any]] = []
    votes: list[Windowed[Any]] = []
    alerts: list[Any] = []
    rates: list[float] = []
    results.pipe(window_results(seconds=2, time="received", per_session=True)).subscribe(
        windows.append
    )
    results.pipe(
        window_results(seconds=2, time="sensor", per_session=True),
        majority_vote(),
        rising_edge(
            lambda w: w.value == "BROKEN",
            debounce=4,
            time=lambda w: w.end,
            per_session=True,
        ),
    ).subscribe(alerts.append)
    results.pipe(window_results(seconds=2, time="received", per_session=True), majority_vote())\
        .subscribe(votes.append)
    results.pipe(rate(seconds=3, time="received")).subscribe(rates.append)
    results.connect(scheduler=scheduler)
    scheduler.start()
    return (
        [(w.session_id, w.start, w.end, [e.id for e in w], w.late) for w in windows],
        votes,
        alerts,
        rates,
    )


@given(
    data=st.lists(
        st.tuples(
            # Negative gaps: events recorded out of time order, some of them late.
            st.floats(min_value=-1.5, max_value=1.5),
            st.integers(0, 1),
            st.integers(0, 1),
        ),
        min_size=1,
        max_size=60,
    ),
    speed=st.sampled_from([0.5, 1.0, 3.0, 10.0, 250.0]),
)
@settings(max_examples=60, deadline=None)
def test_law_replay_speed_does_not_change_windows_votes_or_alerts(
    data: list[tuple[float, int, int]], speed: float
) -> None:
    gaps, labels, sessions = (list(column) for column in zip(*data, strict=True))
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    try:
        write_recording(path, gaps, labels, sessions)
        fast = analyse(path, None)
        paced = analyse(path, speed)
        assert paced == fast
        # Every event is in a window or counted late on one: nothing dropped.
        assert sum(len(w[3]) + w[4] for w in fast[0]) == len(data)
    finally:
        os.unlink(path)


def test_wall_clock_windows_do_depend_on_replay_speed() -> None:
    # The defect event time fixes: the same recording, other windows at another pace.
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    try:
        write_recording(path, [0.4] * 23, [0] * 23, [0] * 23)

        def sizes(speed: float | None) -> list[int]:
            scheduler = TestScheduler()
            out: list[list[Any]] = []
            replay(path, speed=speed, scheduler=scheduler).pipe(
                window_results(seconds=2.0, scheduler=scheduler)
            ).subscribe(lambda w: out.append(w), scheduler=scheduler)
            scheduler.start()
            return [len(w) for w in out if w]

        assert sizes(None) == [23]
        assert sizes(1.0) != [23]
    finally:
        os.unlink(path)


def test_subject_source_with_late_event_keeps_its_place() -> None:
    subject: Subject[Item] = Subject()
    out: list[Window[Item]] = []
    subject.pipe(window_results(seconds=1, time=t_of)).subscribe(out.append)
    for item in (Item("a", 0.2), Item("b", 1.1), Item("c", 0.9), Item("d", 2.0)):
        subject.on_next(item)
    assert shape(out) == [(0.0, 1.0, ["a"], 0), (1.0, 2.0, ["b"], 1)]
    subject.on_completed()
    assert shape(out)[-1] == (2.0, 3.0, ["d"], 0)
