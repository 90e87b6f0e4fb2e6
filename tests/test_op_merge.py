"""merge_sessions and by_session: tagging, failure isolation, grouping, in virtual time."""

from __future__ import annotations

import threading
from typing import Any

import reactivex
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler

from rxlens.events import (
    Heartbeat,
    InferenceResult,
    LensEvent,
    SessionFailed,
    StreamStart,
    tag_session,
)
from rxlens.operators import by_session, merge_sessions
from rxlens.sinks import collect

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error
subscribe = ReactiveTest.subscribe
ERR = RuntimeError("s2 broke")


def r(text: str) -> InferenceResult:
    return InferenceResult(response=[text])


def seen(res: Any) -> list[tuple[float, str, Any]]:
    out = []
    for m in res.messages:
        v = m.value
        if v.kind == "N":
            event = v.value
            what = (
                ("failed", event.session_id, event.error)
                if isinstance(event, SessionFailed)
                else (event.text, event.session_id)
            )
            out.append((m.time, "N", what))
        else:
            out.append((m.time, v.kind, None))
    return out


def test_merge_tags_each_event_and_turns_a_failure_into_an_event() -> None:
    s = TestScheduler()
    s1 = s.create_hot_observable(on_next(201, r("a")), on_next(205, r("b")), on_completed(209))
    s2 = s.create_hot_observable(on_next(203, r("c")), on_error(206, ERR))
    res = s.start(lambda: merge_sessions({"s1": s1, "s2": s2}))
    assert seen(res) == [
        (201, "N", ("a", "s1")),
        (203, "N", ("c", "s2")),
        (205, "N", ("b", "s1")),
        (206, "N", ("failed", "s2", ERR)),
        (209, "C", None),
    ]
    assert s1.subscriptions == [subscribe(200, 209)]
    assert s2.subscriptions == [subscribe(200, 206)]


def test_a_silent_session_does_not_hold_back_the_others() -> None:
    s = TestScheduler()
    slow = s.create_hot_observable()  # never emits, never ends
    fast = s.create_hot_observable(on_next(201, r("a")), on_next(202, r("b")), on_completed(203))
    res = s.start(lambda: merge_sessions({"slow": slow, "fast": fast}), disposed=500)
    assert seen(res) == [(201, "N", ("a", "fast")), (202, "N", ("b", "fast"))]
    assert slow.subscriptions == [subscribe(200, 500)]
    assert fast.subscriptions == [subscribe(200, 203)]


def test_merge_of_nothing_completes_at_once() -> None:
    s = TestScheduler()
    res = s.start(lambda: merge_sessions({}))
    assert seen(res) == [(200, "C", None)]


def test_every_session_failing_still_completes_the_merge() -> None:
    s = TestScheduler()
    a = s.create_hot_observable(on_error(202, ERR))
    b = s.create_hot_observable(on_error(204, ValueError("x")))
    res = s.start(lambda: merge_sessions({"a": a, "b": b}))
    assert [(t, k, w[:2] if w else None) for t, k, w in seen(res)] == [
        (202, "N", ("failed", "a")),
        (204, "N", ("failed", "b")),
        (204, "C", None),
    ]


def test_an_item_that_is_not_a_lens_event_fails_only_its_session() -> None:
    s = TestScheduler()
    bad = s.create_hot_observable(on_next(201, "just text"), on_next(202, r("never")))
    good = s.create_hot_observable(on_next(203, r("ok")), on_completed(204))
    res = s.start(lambda: merge_sessions({"bad": bad, "good": good}))
    got = seen(res)
    assert got[0][:2] == (201, "N") and got[0][2][:2] == ("failed", "bad")
    assert isinstance(got[0][2][2], TypeError)
    assert got[1:] == [(203, "N", ("ok", "good")), (204, "C", None)]
    assert bad.subscriptions == [subscribe(200, 201)]


def test_disposing_the_merge_disposes_every_session() -> None:
    s = TestScheduler()
    a = s.create_hot_observable(on_next(210, r("a")))
    b = s.create_hot_observable(on_next(220, r("b")))
    s.start(lambda: merge_sessions({"a": a, "b": b}), disposed=215)
    assert a.subscriptions == [subscribe(200, 215)]
    assert b.subscriptions == [subscribe(200, 215)]


def test_tag_session_replaces_and_keeps_the_rest() -> None:
    event = InferenceResult(response=["A", {"A": 1}], id="7", received_at=12.5, raw='{"x":1}')
    tagged = tag_session(event, "lsn-1")
    assert tagged.session_id == "lsn-1"
    assert (tagged.id, tagged.received_at, tagged.raw, tagged.response) == (
        "7",
        12.5,
        '{"x":1}',
        event.response,
    )
    assert tag_session(tagged, "lsn-1") is tagged
    start = tag_session(StreamStart(session_id="other", reader_id="r"), "lsn-1")
    assert isinstance(start, StreamStart) and start.session_id == "lsn-1"


def test_session_failed_is_a_lens_event_with_a_raw_frame() -> None:
    failed = SessionFailed(session_id="s", error=ValueError("bad key"))
    assert isinstance(failed, LensEvent)
    assert failed.type == "rxlens.session.failed"
    assert failed.event_data == {"error_type": "ValueError", "message": "bad key"}
    assert '"rxlens.session.failed"' in failed.raw


def test_merge_serialises_sessions_on_real_threads() -> None:
    per_session = 2_000
    sources = {
        f"s{i}": reactivex.from_iterable(range(per_session)).pipe(
            ops.map(lambda n, i=i: InferenceResult(response=[f"{i}:{n}"])),
            ops.subscribe_on(reactivex.scheduler.NewThreadScheduler()),
        )
        for i in range(4)
    }
    overlaps = 0
    busy = threading.Lock()
    seen_texts: list[str | None] = []

    def check(event: LensEvent) -> LensEvent:
        # Two emissions at once would find the lock taken.
        nonlocal overlaps
        if not busy.acquire(blocking=False):
            overlaps += 1
            return event
        try:
            seen_texts.append(getattr(event, "text", None))
        finally:
            busy.release()
        return event

    events = collect(merge_sessions(sources).pipe(ops.map(check)), timeout=30)
    assert overlaps == 0
    assert len(events) == 4 * per_session
    for sid in sources:
        mine = [e.text for e in events if e.session_id == sid]
        assert mine == [f"{sid[1:]}:{n}" for n in range(per_session)]


# --- by_session --------------------------------------------------------------------------------


def test_by_session_groups_and_ends_a_failed_session_group() -> None:
    s = TestScheduler()
    s1 = s.create_hot_observable(on_next(201, r("a")), on_next(205, r("b")), on_completed(209))
    s2 = s.create_hot_observable(on_next(203, r("c")), on_error(206, ERR))
    groups: dict[Any, list[tuple[float, str, Any]]] = {}

    def record(group: Any) -> reactivex.Observable[Any]:
        log = groups.setdefault(group.key, [])
        return group.pipe(
            ops.do_action(
                lambda e: log.append(
                    (s.clock, "N", type(e).__name__ if isinstance(e, SessionFailed) else e.text)
                ),
                lambda e: log.append((s.clock, "E", None)),
                lambda: log.append((s.clock, "C", None)),
            )
        )

    res = s.start(
        lambda: merge_sessions({"s1": s1, "s2": s2}).pipe(by_session(), ops.flat_map(record))
    )
    assert groups == {
        "s1": [(201, "N", "a"), (205, "N", "b"), (209, "C", None)],
        "s2": [(203, "N", "c"), (206, "N", "SessionFailed"), (206, "C", None)],
    }
    assert res.messages[-1].time == 209 and res.messages[-1].value.kind == "C"


def test_by_session_keys_and_majority_per_session() -> None:
    from rxlens.operators import majority_vote, window_results

    merged = merge_sessions(
        {
            "a": reactivex.of(r("X"), r("X"), r("Y"), r("Y"), r("Y"), Heartbeat()),
            "b": reactivex.of(r("Z"), r("Q"), r("Z")),
        }
    )
    votes = collect(
        merged.pipe(
            by_session(),
            ops.flat_map(
                lambda g: g.pipe(
                    window_results(count=3), majority_vote(), ops.map(lambda v, k=g.key: (k, v))
                )
            ),
        ),
        timeout=5,
    )
    assert sorted(votes, key=str) == sorted([("a", "X"), ("a", "Y"), ("b", "Z")], key=str)
