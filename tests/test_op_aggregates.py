"""label_counts, majority_vote, mean_scores, rate: marbles in virtual time and reference laws."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler

import rxlens.testing
from rxlens import analytics
from rxlens.analytics import default_label
from rxlens.events import Heartbeat, InferenceResult, SessionFailed
from rxlens.operators import label_counts, majority_vote, mean_scores, rate
from rxlens.testing import TimedStream
from rxlens.testing.strategies import LENSES, lens_streams

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error
subscribe = ReactiveTest.subscribe
ERR = RuntimeError("boom")


def result(label: str, scores: dict[str, float] | None = None) -> InferenceResult:
    response: list[Any] = [label] if scores is None else [label, scores]
    return InferenceResult(response=response)


def run(messages: list[Any], operator: Any) -> tuple[list[tuple[float, str, Any]], Any]:
    s = TestScheduler()
    src = s.create_hot_observable(messages)
    res = s.start(lambda: src.pipe(operator))
    return [(m.time, m.value.kind, getattr(m.value, "value", None)) for m in res.messages], src


# --- default_label -----------------------------------------------------------------------------


def test_default_label_reads_label_then_text_then_strings() -> None:
    assert default_label(result("HEALTHY", {"HEALTHY": 3})) == "HEALTHY"
    assert default_label(InferenceResult(response=["Person at the door"])) == "Person at the door"
    assert default_label("plain") == "plain"
    assert default_label(Heartbeat(session_id="s")) is None
    assert default_label(SessionFailed(session_id="s", error=ERR)) is None
    assert default_label(InferenceResult(response=[[0.1, 0.2]])) is None  # an embedding
    assert default_label(3) is None


# --- label_counts ------------------------------------------------------------------------------


def test_label_counts_marbles() -> None:
    msgs, src = run(
        [
            on_next(210, [result("A"), result("B"), Heartbeat(), result("A")]),
            on_next(230, []),
            on_completed(240),
        ],
        label_counts(),
    )
    assert msgs == [(210, "N", Counter(A=2, B=1)), (230, "N", Counter()), (240, "C", None)]
    assert src.subscriptions == [subscribe(200, 240)]


def test_label_counts_forwards_errors_and_uses_key() -> None:
    msgs, _ = run(
        [on_next(210, ["ab", "ac", "b"]), on_error(220, ERR)], label_counts(key=lambda s: s[0])
    )
    assert msgs == [(210, "N", Counter(a=2, b=1)), (220, "E", None)]


def test_label_counts_key_error_is_an_on_error() -> None:
    msgs, _ = run([on_next(210, [1])], label_counts(key=lambda x: x["nope"]))
    assert [m[:2] for m in msgs] == [(210, "E")]


# --- majority_vote -----------------------------------------------------------------------------


def test_majority_vote_marbles() -> None:
    msgs, src = run(
        [
            on_next(201, ["A", "A", "B"]),
            on_next(205, ["A", "B"]),
            on_next(209, ["A", "B", "C"]),
            on_next(211, []),
            on_completed(213),
        ],
        majority_vote(),
    )
    assert msgs == [
        (201, "N", "A"),
        (205, "N", None),
        (209, "N", None),
        (211, "N", None),
        (213, "C", None),
    ]
    assert src.subscriptions == [subscribe(200, 213)]


def test_majority_vote_min_share_is_inclusive_and_ignores_unlabelled_items() -> None:
    assert analytics.majority_vote(["A", "A", "B", "C"], 0.5) == "A"  # exactly half
    assert analytics.majority_vote(["A", "A", "B", "C", "D"], 0.5) is None  # 2/5
    assert analytics.majority_vote(["A", "A", "B", "C", "D"], 0.4) == "A"
    assert analytics.majority_vote([result("A"), Heartbeat(), Heartbeat()], 1.0) == "A"
    assert analytics.majority_vote([Heartbeat()]) is None


@pytest.mark.parametrize("share", [-0.1, 1.1])
def test_majority_vote_rejects_shares_outside_unit_interval(share: float) -> None:
    with pytest.raises(ValueError, match="min_share"):
        majority_vote(share)


def reference_vote(labels: list[str | None], min_share: float) -> str | None:
    votes = [label for label in labels if label is not None]
    if not votes:
        return None
    tally: dict[str, int] = {}
    for label in votes:
        tally[label] = tally.get(label, 0) + 1
    best = max(tally.values())
    winners = [label for label, n in tally.items() if n == best]
    if len(winners) != 1 or best / len(votes) < min_share:
        return None
    return winners[0]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["A", "B", "C", "unknown"])), max_size=25),
    st.floats(0.0, 1.0),
)
def test_majority_vote_agrees_with_a_plain_reference(
    labels: list[str | None], min_share: float
) -> None:
    items = [Heartbeat() if label is None else result(label) for label in labels]
    msgs, _ = run([on_next(210, items), on_completed(220)], majority_vote(min_share))
    assert msgs == [(210, "N", reference_vote(labels, min_share)), (220, "C", None)]


# --- mean_scores -------------------------------------------------------------------------------


def test_mean_scores_marbles_keep_the_scale() -> None:
    msgs, _ = run(
        [
            on_next(201, [result("A", {"A": 3, "B": 2}), result("A", {"A": 5}), Heartbeat()]),
            on_next(208, []),
            on_completed(211),
        ],
        mean_scores(),
    )
    assert msgs == [(201, "N", {"A": 4.0, "B": 2.0}), (208, "N", {}), (211, "C", None)]


def test_mean_scores_on_plain_mappings_skips_non_numbers() -> None:
    assert analytics.mean_scores([{"A": 0.2, "B": "x", "C": True}, {"A": 0.4}]) == pytest.approx(
        {"A": 0.3}
    )
    assert analytics.mean_scores([{"A": 50.0}, {"A": 100}], scores=lambda m: m) == {"A": 75.0}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from("ABC"), st.integers(0, 100)), max_size=10))
def test_mean_scores_agrees_with_a_reference(windows: list[dict[str, int]]) -> None:
    got = analytics.mean_scores(windows)
    for name in "ABC":
        values = [w[name] for w in windows if name in w]
        if values:
            assert got[name] == pytest.approx(sum(values) / len(values))
        else:
            assert name not in got


def test_count_labels_is_a_counter() -> None:
    assert analytics.label_counts(["x", "y", "x", 1]) == Counter(x=2, y=1)


# --- rate --------------------------------------------------------------------------------------


def test_rate_marbles() -> None:
    s = TestScheduler()
    src = s.create_hot_observable(
        on_next(201, "a"), on_next(203, "b"), on_next(207, "c"), on_completed(209)
    )
    res = s.start(lambda: src.pipe(rate(4, scheduler=s)))
    assert [(m.time, m.value.kind, getattr(m.value, "value", None)) for m in res.messages] == [
        (204, "N", 0.5),
        (208, "N", 0.25),
        (209, "N", 0.0),
        (209, "C", None),
    ]
    assert src.subscriptions == [subscribe(200, 209)]


def test_rate_uses_the_subscription_scheduler_and_stops_on_dispose() -> None:
    s = TestScheduler()
    src = s.create_hot_observable(on_next(201, "a"), on_next(202, "b"))
    res = s.start(lambda: src.pipe(rate(1.0)), disposed=205)
    # Items due at a tick's instant arrive first and count in the span that closes then.
    assert [(m.time, m.value.value) for m in res.messages] == [
        (201, 1.0),
        (202, 1.0),
        (203, 0.0),
        (204, 0.0),
    ]
    assert src.subscriptions == [subscribe(200, 205)]
    s.advance_to(1000)
    assert len(res.messages) == 4


def test_rate_forwards_errors_without_a_partial_value() -> None:
    s = TestScheduler()
    src = s.create_hot_observable(on_next(201, "a"), on_error(206, ERR))
    res = s.start(lambda: src.pipe(rate(4, scheduler=s)))
    assert [(m.time, m.value.kind) for m in res.messages] == [(204, "N"), (206, "E")]


def test_rate_rejects_a_non_positive_span() -> None:
    with pytest.raises(ValueError, match="positive"):
        rate(0)


# --- on drawn sessions (rxlens.testing.strategies) ---------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens_streams(lenses=LENSES, malformed=True))
def test_aggregates_of_a_whole_drawn_session_agree_with_references(stream: TimedStream) -> None:
    events = stream.events
    [counts] = rxlens.testing.run(lambda s: s.pipe(ops.to_list(), label_counts()), stream).values
    # Labels of results only (Machine State labels, Activity Monitor texts), every score style.
    labels = [e.label for e in events if isinstance(e, InferenceResult) and e.label is not None]
    assert counts == Counter(labels)
    [means] = rxlens.testing.run(lambda s: s.pipe(ops.to_list(), mean_scores()), stream).values
    scored = [e.scores for e in events if isinstance(e, InferenceResult) and e.scores]
    for name in {n for scores in scored for n in scores}:
        values = [scores[name] for scores in scored if name in scores]
        assert means[name] == pytest.approx(sum(values) / len(values))
