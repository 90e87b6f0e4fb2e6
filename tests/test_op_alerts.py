"""rising_edge and changes: marbles in virtual time and agreement with plain references."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.events import Heartbeat, InferenceResult
from rxlens.operators import changes, rising_edge

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error
subscribe = ReactiveTest.subscribe
ERR = RuntimeError("boom")


def marbles(s: TestScheduler, spec: str, values: dict[str, Any] | None = None) -> Any:
    """A hot source from a marble string, one character per second from t=200 (``|`` ends it)."""
    messages = []
    for offset, char in enumerate(spec):
        if char == "-":
            continue
        if char == "|":
            messages.append(on_completed(200 + offset))
        elif char == "#":
            messages.append(on_error(200 + offset, ERR))
        else:
            messages.append(on_next(200 + offset, (values or {}).get(char, char)))
    return s.create_hot_observable(messages)


def out(res: Any) -> list[tuple[float, str, Any]]:
    return [(m.time - 200, m.value.kind, getattr(m.value, "value", None)) for m in res.messages]


def is_true(x: Any) -> bool:
    return str(x).startswith("T")


# --- rising_edge -------------------------------------------------------------------------------


def test_rising_edge_marbles() -> None:
    s = TestScheduler()
    src = marbles(s, "-T-U-F-V-F|", {"U": "T2", "V": "T3"})
    res = s.start(lambda: src.pipe(rising_edge(is_true)))
    assert out(res) == [(1, "N", "T"), (7, "N", "T3"), (10, "C", None)]
    assert src.subscriptions == [subscribe(200, 210)]


def test_rising_edge_on_alert_texts_fires_once_per_alert() -> None:
    texts = [
        "All clear",
        "Alert: person at the door",
        "ALERT: still there",
        "All clear",
        "alert: back",
    ]
    s = TestScheduler()
    src = s.create_hot_observable(
        [on_next(201 + i, InferenceResult(response=[t])) for i, t in enumerate(texts)]
        + [on_next(210, Heartbeat())]
    )
    res = s.start(
        lambda: src.pipe(
            rising_edge(lambda r: "alert:" in (getattr(r, "text", None) or "").lower())
        )
    )
    assert [(m.time, m.value.value.text) for m in res.messages] == [
        (202, "Alert: person at the door"),
        (205, "alert: back"),
    ]


def test_rising_edge_debounce_marbles() -> None:
    s = TestScheduler()
    src = marbles(s, "-T-F-U------F-T-|", {"U": "T5"})
    res = s.start(lambda: src.pipe(rising_edge(is_true, debounce=3, scheduler=s)))
    assert out(res) == [(8, "N", "T5"), (16, "C", None)]


def test_rising_edge_debounce_drops_an_unconfirmed_rise_at_completion() -> None:
    s = TestScheduler()
    src = marbles(s, "-T-|")
    res = s.start(lambda: src.pipe(rising_edge(is_true, debounce=3)))
    assert out(res) == [(3, "C", None)]


def test_rising_edge_predicate_error_is_on_error_and_unsubscribes() -> None:
    s = TestScheduler()
    src = marbles(s, "-a-b-|")

    def bad(x: str) -> bool:
        if x == "b":
            raise ValueError("bad item")
        return False

    res = s.start(lambda: src.pipe(rising_edge(bad)))
    assert [(t, k) for t, k, _ in out(res)] == [(3, "E")]
    assert isinstance(res.messages[0].value.exception, ValueError)


def test_rising_edge_forwards_source_errors_and_cancels_the_timer() -> None:
    s = TestScheduler()
    src = marbles(s, "-T#")
    res = s.start(lambda: src.pipe(rising_edge(is_true, debounce=2, scheduler=s)))
    assert out(res) == [(2, "E", None)]
    s.advance_to(1000)
    assert len(res.messages) == 1


def test_rising_edge_disposal_cancels_a_pending_rise() -> None:
    s = TestScheduler()
    src = marbles(s, "-T-----")
    res = s.start(lambda: src.pipe(rising_edge(is_true, debounce=3, scheduler=s)), disposed=202)
    s.advance_to(1000)
    assert res.messages == []
    assert src.subscriptions == [subscribe(200, 202)]


def test_rising_edge_rejects_negative_debounce() -> None:
    with pytest.raises(ValueError, match="debounce"):
        rising_edge(is_true, debounce=-1)


def reference_edges(values: list[bool]) -> list[int]:
    """The vendor cookbook's loop: fire when true and not already active."""
    fired, active = [], False
    for i, value in enumerate(values):
        if value and not active:
            fired.append(i)
        active = value
    return fired


def reference_debounced(
    events: list[tuple[int, bool]], end: int, debounce: int
) -> list[tuple[int, int]]:
    """(emission time, index) of each confirmed rise: a value must hold ``debounce`` seconds.

    Held means: no item with the other value within ``debounce`` seconds, and the source had not
    completed by then; an item at the very instant a confirmation is due comes first.
    """
    fired = []
    state = False
    i = 0
    while i < len(events):
        t, value = events[i]
        if value == state:
            i += 1
            continue
        # value differs: find the next item with the other value (== state)
        j = i + 1
        while j < len(events) and events[j][1] == value:
            j += 1
        due = t + debounce
        contrary_at = events[j][0] if j < len(events) else None
        if (contrary_at is None or contrary_at > due) and due < end:
            if value:
                fired.append((due, i))
            state = value
        i = j
    return fired


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=40))
def test_rising_edge_agrees_with_the_cookbook_on_any_sequence(values: list[bool]) -> None:
    s = TestScheduler()
    src = s.create_hot_observable([on_next(201 + i, (i, v)) for i, v in enumerate(values)])
    res = s.start(lambda: src.pipe(rising_edge(lambda x: x[1])))
    assert [m.value.value[0] for m in res.messages] == reference_edges(values)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.booleans()), max_size=30),
    st.integers(1, 6),
    st.integers(1, 10),
)
def test_debounced_rising_edge_agrees_with_a_reference(
    steps: list[tuple[int, bool]], debounce: int, tail: int
) -> None:
    events, t = [], 0
    for gap, value in steps:
        t += gap
        events.append((t, value))
    end = t + tail
    s = TestScheduler()
    src = s.create_hot_observable(
        [on_next(200 + at, (i, v)) for i, (at, v) in enumerate(events)] + [on_completed(200 + end)]
    )
    res = s.start(lambda: src.pipe(rising_edge(lambda x: x[1], debounce=debounce, scheduler=s)))
    got = [(m.time - 200, m.value.value[0]) for m in res.messages if m.value.kind == "N"]
    assert got == reference_debounced(events, end, debounce)
    assert res.messages[-1].time == 200 + end and res.messages[-1].value.kind == "C"


# --- changes -----------------------------------------------------------------------------------


def test_changes_marbles_skip_unlabelled_items() -> None:
    s = TestScheduler()
    src = marbles(s, "-A-a-h-b-B-C-D-|", {"a": "A", "b": "B", "h": Heartbeat()})
    res = s.start(lambda: src.pipe(changes()))
    assert out(res) == [
        (1, "N", "A"),
        (7, "N", "B"),
        (11, "N", "C"),
        (13, "N", "D"),
        (15, "C", None),
    ]
    assert src.subscriptions == [subscribe(200, 215)]


def test_changes_docstring_marbles() -> None:
    s = TestScheduler()
    src = marbles(s, "-A-A-h-A-B-B-A-|", {"h": Heartbeat()})
    res = s.start(lambda: src.pipe(changes()))
    assert out(res) == [(1, "N", "A"), (9, "N", "B"), (13, "N", "A"), (15, "C", None)]


def test_changes_emits_the_item_and_reads_labels() -> None:
    a1, a2, b = (
        InferenceResult(response=[x, {x: 1}], query_id=q)
        for x, q in [("A", "1"), ("A", "2"), ("B", "3")]
    )
    s = TestScheduler()
    src = s.create_hot_observable(
        on_next(201, a1), on_next(202, a2), on_next(203, b), on_error(204, ERR)
    )
    res = s.start(lambda: src.pipe(changes()))
    assert [(m.time, m.value.kind, getattr(m.value, "value", None)) for m in res.messages] == [
        (201, "N", a1),
        (203, "N", b),
        (204, "E", None),
    ]
    assert res.messages[0].value.value.query_id == "1"


def test_changes_key_errors_are_on_error() -> None:
    s = TestScheduler()
    src = marbles(s, "-a-")
    res = s.start(lambda: src.pipe(changes(key=lambda x: x["k"])))
    assert [(t, k) for t, k, _ in out(res)] == [(1, "E")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from("ABC")), max_size=30))
def test_changes_agrees_with_a_reference(labels: list[str | None]) -> None:
    expected, last = [], None
    for i, label in enumerate(labels):
        if label is not None and label != last:
            expected.append(i)
            last = label
    s = TestScheduler()
    src = s.create_hot_observable([on_next(201 + i, (i, lab)) for i, lab in enumerate(labels)])
    res = s.start(lambda: src.pipe(changes(key=lambda x: x[1])))
    assert [m.value.value[0] for m in res.messages] == expected
