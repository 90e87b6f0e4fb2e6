"""resume's id handling, in virtual time: what a resume may drop, and what it must deliver.

The rules under test (SECURITY.md, "exactly once"): the cursor and the id memory belong to the
subscription; only what the server sends again after a reconnect (the same id with the same
content as an event this subscription delivered before the reconnect) is dropped; repeats
within one connection always pass; ids that go back after a reconnect (a restarted server) are
delivered with a warning and a state note; the memory is bounded by count and bytes, and an
over-long id is a typed error.
"""

from __future__ import annotations

import tracemalloc
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from rxlens.errors import EventIdTooLong, TransportError
from rxlens.retry import RetryPolicy
from rxlens.sse import ConnectionState
from rxlens.sse._resume import MAX_ID_LENGTH, resume

on_next = ReactiveTest.on_next
on_error = ReactiveTest.on_error
on_completed = ReactiveTest.on_completed

DROP = TransportError("connection reset")
POLICY = RetryPolicy(base=1, jitter=0, max_attempts=5)


class Item(NamedTuple):
    id: str | None
    data: str


def connections(
    scheduler: TestScheduler, *scripts: list[Recorded[Any]]
) -> Observable[Item]:
    """An upstream whose n-th subscription plays the n-th script (a new connection each time)."""
    observables: Iterator[Observable[Item]] = iter(
        [scheduler.create_cold_observable(*script) for script in scripts]
    )
    return reactivex.defer(lambda _s: next(observables))


def delivered(messages: list[Recorded[Any]]) -> list[Item]:
    return [m.value.value for m in messages if m.value.kind == "N"]


class Cursor:
    """The smallest explicit cursor: what resume reports and resumes from."""

    def __init__(self, url: str, last_event_id: str) -> None:
        self.url = url
        self.last_event_id = last_event_id


def test_repeated_ids_within_one_connection_all_pass() -> None:
    # Second-resolution timestamp ids: legal, and not unique. Nothing on one connection is a
    # replay, so nothing is dropped.
    scheduler = TestScheduler()
    items = [Item("1700000000", "a"), Item("1700000000", "b"), Item("1700000001", "c"),
             Item("1700000001", "d"), Item("1700000001", "e")]
    xs = scheduler.create_cold_observable(
        *[on_next(10 + i, item) for i, item in enumerate(items)], on_completed(30)
    )
    result = scheduler.start(lambda: xs.pipe(resume(POLICY)))
    assert delivered(result.messages) == items


def test_a_replay_after_a_reconnect_is_dropped_up_to_the_cursor() -> None:
    # The server ignores Last-Event-ID and sends 1 and 2 again: the same ids with the same
    # content are the replay; 3 is new.
    scheduler = TestScheduler()
    upstream = connections(
        scheduler,
        [on_next(10, Item("1", "a")), on_next(20, Item("2", "b")), on_error(30, DROP)],
        [on_next(5, Item("1", "a")), on_next(6, Item("2", "b")), on_next(7, Item("3", "c")),
         on_completed(9)],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact replay is no reason to warn
        result = scheduler.start(lambda: upstream.pipe(resume(POLICY)))
    assert delivered(result.messages) == [Item("1", "a"), Item("2", "b"), Item("3", "c")]


def test_a_restarted_server_is_delivered_with_a_warning_and_a_note() -> None:
    # After the reconnect the server numbers from 1 again, with new events: not a replay.
    scheduler = TestScheduler()
    first = [Item(str(i), f"old {i}") for i in range(1, 6)]
    second = [Item(str(i), f"new {i}") for i in range(1, 8)]
    upstream = connections(
        scheduler,
        [*[on_next(10 + i, item) for i, item in enumerate(first)], on_error(30, DROP)],
        [*[on_next(5 + i, item) for i, item in enumerate(second)], on_completed(20)],
    )
    states: list[ConnectionState] = []
    with pytest.warns(UserWarning, match="went back") as caught:
        result = scheduler.start(
            lambda: upstream.pipe(resume(POLICY, on_state=states.append))
        )
    assert delivered(result.messages) == first + second
    notes = [s for s in states if s.note]
    assert len(notes) == 1 and "went back" in notes[0].note
    assert notes[0].last_event_id == "5"
    assert len([w for w in caught if "went back" in str(w.message)]) == 1


def test_a_restart_beyond_the_memory_is_noticed_by_lower_numeric_ids() -> None:
    # The restarted server's ids were never seen (the memory is off), but they are lower than
    # the cursor: delivered, with the note.
    scheduler = TestScheduler()
    upstream = connections(
        scheduler,
        [on_next(10, Item("41", "a")), on_next(11, Item("42", "b")), on_error(30, DROP)],
        [on_next(5, Item("1", "c")), on_next(6, Item("2", "d")), on_completed(20)],
    )
    states: list[ConnectionState] = []
    with pytest.warns(UserWarning, match="went back"):
        result = scheduler.start(
            lambda: upstream.pipe(resume(POLICY, remember=0, on_state=states.append))
        )
    assert [i.data for i in delivered(result.messages)] == ["a", "b", "c", "d"]
    assert [s.note for s in states if s.note]


def test_two_subscriptions_each_have_their_own_cursor_and_memory() -> None:
    # One cold pipeline, two subscriptions: what one delivered is no replay for the other.
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, Item("1", "a")), on_next(20, Item("2", "b")), on_completed(30)
    )
    pipeline = xs.pipe(resume(POLICY))
    first: list[Item] = []
    second: list[Item] = []
    pipeline.subscribe(first.append, scheduler=scheduler)
    scheduler.advance_to(15)
    pipeline.subscribe(second.append, scheduler=scheduler)
    scheduler.advance_to(100)
    assert first == second == [Item("1", "a"), Item("2", "b")]


def test_the_explicit_cursor_is_reported_and_resumed_from() -> None:
    scheduler = TestScheduler()
    cursor = Cursor("http://127.0.0.1:1/stream", "")
    xs = scheduler.create_cold_observable(on_next(10, Item("7", "a")), on_error(20, DROP))

    def track(item: Item) -> Item:
        cursor.last_event_id = item.id or cursor.last_event_id
        return item

    states: list[ConnectionState] = []
    policy = RetryPolicy(base=1, jitter=0, max_attempts=1)
    scheduler.start(
        lambda: xs.pipe(
            reactivex.operators.map(track),
            resume(policy, cursor=cursor, on_state=states.append),
        )
    )
    assert [(s.kind, s.url, s.last_event_id) for s in states] == [
        ("backing_off", "http://127.0.0.1:1/stream", "7"),
        ("failed", "http://127.0.0.1:1/stream", "7"),
    ]


def test_the_memory_is_bounded_by_bytes() -> None:
    # Two 100-character ids fit in 300 bytes of memory, three do not: the oldest is forgotten
    # and its replay passes again (at least once, never lost).
    scheduler = TestScheduler()
    ids = ["a" * 100, "b" * 100, "c" * 100]
    first = [Item(i, i[0]) for i in ids]
    upstream = connections(
        scheduler,
        [*[on_next(10 + n, item) for n, item in enumerate(first)], on_error(30, DROP)],
        [*[on_next(5 + n, item) for n, item in enumerate(first)], on_completed(20)],
    )
    result = scheduler.start(
        lambda: upstream.pipe(resume(POLICY, remember_bytes=2 * (100 + 64) + 10))
    )
    assert [i.data for i in delivered(result.messages)] == ["a", "b", "c", "a", "b", "c"]


def test_memory_of_long_ids_stays_within_its_byte_budget() -> None:
    # 3,000 distinct 1,000-character ids: the old memory kept all of them (~3 MB); the byte
    # budget keeps what is remembered under 256 KiB here.
    budget = 256 * 1024
    scheduler = TestScheduler()
    items = [Item(f"{n:08d}" + "x" * 992, "d") for n in range(3000)]
    subject: reactivex.subject.Subject[Item] = reactivex.subject.Subject()
    got = 0

    def count(_item: Item) -> None:
        nonlocal got
        got += 1

    tracemalloc.start()
    try:
        subject.pipe(resume(POLICY, remember_bytes=budget)).subscribe(count, scheduler=scheduler)
        before = tracemalloc.take_snapshot()
        for item in items:
            subject.on_next(item)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    items.clear()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert got == 3000
    # The ids themselves are shared with the items; what the memory adds is bounded.
    assert grown < 2 * budget, f"resume's memory grew by {grown} bytes"


def test_an_over_long_id_is_a_typed_error() -> None:
    scheduler = TestScheduler()
    long_id = "9" * (MAX_ID_LENGTH + 1)
    xs = scheduler.create_cold_observable(
        on_next(10, Item("1", "a")), on_next(20, Item(long_id, "b")), on_completed(30)
    )
    result = scheduler.start(lambda: xs.pipe(resume(POLICY)))
    assert delivered(result.messages) == [Item("1", "a")]
    error = result.messages[-1].value.exception
    assert isinstance(error, EventIdTooLong)
    assert not error.retryable
    assert str(MAX_ID_LENGTH) in str(error)
    assert long_id not in str(error)  # the message quotes the id's start only


def test_max_id_length_can_be_raised() -> None:
    scheduler = TestScheduler()
    long_id = "9" * (MAX_ID_LENGTH + 1)
    xs = scheduler.create_cold_observable(on_next(10, Item(long_id, "b")), on_completed(30))
    result = scheduler.start(lambda: xs.pipe(resume(POLICY, max_id_length=MAX_ID_LENGTH + 1)))
    assert delivered(result.messages) == [Item(long_id, "b")]


@pytest.mark.parametrize("kwargs", [{"remember_bytes": -1}, {"max_id_length": 0}])
def test_bad_bounds_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        resume(**kwargs)


# --- laws (Hypothesis) ------------------------------------------------------------------------


def run_connections(scripts: list[list[Item]], **options: Any) -> list[Item]:
    """Each script is one connection (dropped after its items, the last one completes)."""
    scheduler = TestScheduler()
    recorded = []
    for n, script in enumerate(scripts):
        end = on_completed(len(script) + 2) if n == len(scripts) - 1 else on_error(
            len(script) + 2, DROP
        )
        recorded.append([*(on_next(1 + i, item) for i, item in enumerate(script)), end])
    upstream = connections(scheduler, *recorded)
    policy = RetryPolicy(base=1, jitter=0, max_attempts=len(scripts) + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scheduler.start(
            lambda: upstream.pipe(resume(policy, **options)), disposed=100_000
        )
    return delivered(result.messages)


ids = st.one_of(st.none(), st.sampled_from(["1", "2", "3", "1700000000", "x"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(Item, ids, st.text(max_size=3)), max_size=30))
def test_law_one_connection_delivers_everything(items: list[Item]) -> None:
    # Whatever the ids (repeated, missing), nothing on one connection is dropped.
    assert run_connections([items]) == items


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.data())
def test_law_unique_ids_with_any_replay_are_exactly_once(n: int, data: st.DataObject) -> None:
    # Unique ids; the stream breaks at random points and each new connection starts anywhere
    # at or before the cursor (a server that replays some, all, or none): exactly once, in order.
    items = [Item(str(i), f"e{i}") for i in range(1, n + 1)]
    cuts = sorted(data.draw(st.lists(st.integers(1, n), max_size=5)))
    scripts, start = [], 0
    for cut in [*cuts, n]:
        replay_from = data.draw(st.integers(0, start))
        scripts.append(items[replay_from:cut] if cut > start else items[replay_from:start])
        start = max(start, cut)
    assert run_connections(scripts) == items


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["1", "2", "3", "4"]), min_size=1, max_size=10),
    st.lists(st.sampled_from(["1", "2", "3", "4"]), min_size=1, max_size=10),
)
def test_law_a_restarted_server_is_never_dropped(old: list[str], new: list[str]) -> None:
    # After the reconnect every event is new (other content), whatever its id: all delivered.
    first = [Item(i, f"old {n}") for n, i in enumerate(old)]
    second = [Item(i, f"new {n}") for n, i in enumerate(new)]
    assert run_connections([first, second]) == first + second
