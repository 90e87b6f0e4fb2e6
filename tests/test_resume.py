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
from reactivex.disposable import Disposable
from reactivex.scheduler import ImmediateScheduler
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


# --- the memory's documented bounds, at their edges --------------------------------------------


def replay_after(first: list[Item], second: list[Item], **options: Any) -> list[Item]:
    """What one subscription delivers when ``first`` is cut by a drop and ``second`` follows.

    Each connection pushes its items at once as it is subscribed (thousands of them cost no
    scheduler queue); the reconnect waits for the policy's delay in virtual time.
    """
    scripts = iter([(first, False), (second, True)])

    def connection(observer: Any, _scheduler: Any = None) -> Any:
        script, last = next(scripts)
        for item in script:
            observer.on_next(item)
        if not last:
            observer.on_error(DROP)
        else:
            observer.on_completed()
        return Disposable()

    scheduler = TestScheduler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = scheduler.start(lambda: Observable(connection).pipe(resume(POLICY, **options)))
    assert result.messages[-1].value.kind == "C"
    return delivered(result.messages)


def test_the_default_memory_holds_ten_thousand_ids() -> None:
    # SECURITY.md: "10,000 ids within 4 MiB". A full replay of 10,000 is dropped; of 10,001 the
    # first was forgotten, so it passes, which ends the replay window: all of it comes again.
    ten_thousand = [Item(str(n), "d") for n in range(1, 10_001)]
    assert replay_after(ten_thousand, ten_thousand) == ten_thousand
    one_more = [*ten_thousand, Item("10001", "d")]
    assert replay_after(one_more, one_more) == one_more + one_more


def test_the_default_memory_holds_four_mebibytes_of_ids() -> None:
    # 1,000-character ids count 1,064 bytes each: 3,942 fit in 4 MiB (4,194,288 bytes), the
    # 3,943rd pushes the oldest out.
    ids = [f"{n:04d}" + "x" * 996 for n in range(3943)]
    fits = [Item(i, "d") for i in ids[:3942]]
    assert replay_after(fits, fits) == fits
    over = [Item(i, "d") for i in ids]
    assert replay_after(over, over) == over + over


def test_the_byte_budget_is_exact_and_counts_64_bytes_per_id() -> None:
    # Two 100-character ids take exactly 2 * (100 + 64) bytes: both are kept, and a replay of
    # them is dropped; one byte less keeps only the newer one, so the replay comes again.
    a, b, c, d = (Item(ch * 100, ch) for ch in "abcd")
    assert replay_after([a, b, c], [b, c, d], remember_bytes=2 * 164) == [a, b, c, d]
    assert replay_after([a, b, c], [b, c, d], remember_bytes=2 * 164 - 1) == [a, b, c, b, c, d]


def test_forgetting_by_count_frees_the_bytes_of_the_forgotten_id() -> None:
    # With room for two ids by count and by bytes, the third id pushes the first out by count;
    # the bytes it took are given back, so the second stays remembered.
    a, b, c, d = (Item(ch * 100, ch) for ch in "abcd")
    kept = replay_after([a, b, c], [b, c, d], remember=2, remember_bytes=2 * 164)
    assert kept == [a, b, c, d]


def test_ids_that_are_not_text_count_the_overhead_only() -> None:
    # Any hashable id works; one that is not text counts 64 bytes: two fit in 128.
    class Numbered(NamedTuple):
        id: int
        data: str

    a, b, c, d = (Numbered(n, "x") for n in (1, 2, 3, 4))
    kept = replay_after([a, b, c], [b, c, d], remember_bytes=128)  # type: ignore[list-item]
    assert kept == [a, b, c, d]
    # However long the stream, forgetting gives back exactly what remembering took: still two.
    many = [Numbered(n, "x") for n in range(1, 201)]
    again = [*many[-3:], Numbered(201, "x")]
    kept = replay_after(many, again, remember_bytes=128)  # type: ignore[arg-type]
    assert kept == many + again


def test_the_longest_id_accepted_by_default_is_1024_characters() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(10, Item("9" * 1024, "a")), on_next(20, Item("9" * 1025, "b")), on_completed(30)
    )
    result = scheduler.start(lambda: xs.pipe(resume(POLICY)))
    assert delivered(result.messages) == [Item("9" * 1024, "a")]
    error = result.messages[-1].value.exception
    assert isinstance(error, EventIdTooLong) and (error.limit, error.length) == (1024, 1025)


# --- what counts as ids going back, and how the note quotes an id ------------------------------


def notes_after(first: list[Item], second: list[Item], **options: Any) -> list[str]:
    """The ``"open"`` notes of a subscription whose ``first`` connection drops, and each warning
    said the same."""
    scheduler = TestScheduler()
    upstream = connections(
        scheduler,
        [*[on_next(1 + n, item) for n, item in enumerate(first)], on_error(len(first) + 2, DROP)],
        [*[on_next(1 + n, item) for n, item in enumerate(second)], on_completed(len(second) + 2)],
    )
    states: list[ConnectionState] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = scheduler.start(
            lambda: upstream.pipe(resume(POLICY, on_state=states.append, **options))
        )
    assert delivered(result.messages) == first + second  # nothing dropped in these cases
    notes = [s.note for s in states if s.kind == "open"]
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == notes
    return notes


def test_new_ids_that_are_not_numbers_never_go_back() -> None:
    # "a" sorts before "zz" by length and by text, but only numbers are compared.
    assert notes_after([Item("zz", "1")], [Item("a", "2")]) == []
    assert notes_after([Item("10", "1")], [Item("a", "2")]) == []
    assert notes_after([Item("zz", "1")], [Item("1", "2")]) == []


def test_an_id_equal_to_the_cursor_is_not_going_back() -> None:
    # Timestamp ids: the next event of the same second carries the cursor's id again. Without a
    # memory of it, equal is not below; "05" is the number 5.
    assert notes_after([Item("5", "a")], [Item("5", "b")], remember=0) == []
    assert notes_after([Item("5", "a")], [Item("05", "b")], remember=0) == []
    assert len(notes_after([Item("5", "a")], [Item("4", "b")], remember=0)) == 1


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("12345678901234567890", "12345678901234567890"),  # a number up to 20 digits as it is
        ("1" * 21, "<an id of 21 characters>"),
        ("abc", "<an id of 3 characters>"),  # text never: the server chose it
        ("\uff11\uff12", "<an id of 2 characters>"),  # digits, but not ASCII ones
    ],
)
def test_the_note_quotes_short_numbers_only(key: str, shown: str) -> None:
    notes = notes_after([Item(key, "old")], [Item(key, "new")])
    assert len(notes) == 1
    assert f"resumed after {shown}, then got {shown}" in notes[0]


def test_the_note_names_the_type_of_an_id_that_is_not_text() -> None:
    class Numbered(NamedTuple):
        id: int
        data: str

    notes = notes_after([Numbered(7, "old")], [Numbered(7, "new")])  # type: ignore[list-item]
    assert len(notes) == 1 and "resumed after no id, then got <class 'int'>" in notes[0]


def test_an_items_raw_text_is_its_content() -> None:
    # A typed event's content is its raw text (its data is parsed): the same id with other raw
    # text after a reconnect is a restarted server, delivered; the same raw text is a replay.
    class Typed(NamedTuple):
        id: str
        raw: str
        data: dict[str, int]

    old, replay, new = Typed("1", "{'n': 1}", {}), Typed("1", "{'n': 1}", {}), Typed(
        "1", "{'n': 2}", {}
    )
    assert len(notes_after([old], [new])) == 1  # type: ignore[list-item]
    scheduler = TestScheduler()
    upstream: Any = connections(
        scheduler, [on_next(1, old), on_error(2, DROP)], [on_next(1, replay), on_completed(2)]
    )
    result = scheduler.start(lambda: upstream.pipe(resume(POLICY)))
    assert delivered(result.messages) == [old]


def test_the_first_connection_never_goes_back_even_from_a_given_cursor() -> None:
    # Only a reconnect opens the replay window: on the first connection, ids below the given
    # cursor are the server's business (no warning, no note).
    scheduler = TestScheduler()
    cursor = Cursor("http://127.0.0.1:1/stream", "100")
    xs = scheduler.create_cold_observable(
        on_next(1, Item("5", "a")), on_next(2, Item("6", "b")), on_completed(3)
    )
    states: list[ConnectionState] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = scheduler.start(
            lambda: xs.pipe(resume(POLICY, cursor=cursor, on_state=states.append))
        )
    assert delivered(result.messages) == [Item("5", "a"), Item("6", "b")]
    assert states == []


def test_the_warning_is_attributed_to_rxlens() -> None:
    # So that `-W ignore::UserWarning:rxlens.sse._resume` (or a filter on the module) silences
    # it: the warning names resume's own line, not the library that called it.
    scheduler = TestScheduler()
    upstream = connections(
        scheduler,
        [on_next(1, Item("1", "old")), on_error(2, DROP)],
        [on_next(1, Item("1", "new")), on_completed(2)],
    )
    with pytest.warns(UserWarning, match="went back") as caught:
        scheduler.start(lambda: upstream.pipe(resume(POLICY)))
    assert caught[0].filename.replace("\\", "/").endswith("rxlens/sse/_resume.py")
    with warnings.catch_warnings():
        warnings.filterwarnings("error")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"rxlens\.sse\._resume")
        scheduler = TestScheduler()
        upstream = connections(
            scheduler,
            [on_next(1, Item("1", "old")), on_error(2, DROP)],
            [on_next(1, Item("1", "new")), on_completed(2)],
        )
        result = scheduler.start(lambda: upstream.pipe(resume(POLICY)))
    assert len(delivered(result.messages)) == 2


def test_no_memory_and_the_shortest_id_limit_are_allowed() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(
        on_next(1, Item("1", "a")), on_next(2, Item("12", "b")), on_completed(3)
    )
    result = scheduler.start(
        lambda: xs.pipe(resume(POLICY, remember=0, remember_bytes=0, max_id_length=1))
    )
    assert delivered(result.messages) == [Item("1", "a")]
    error = result.messages[-1].value.exception
    assert isinstance(error, EventIdTooLong) and (error.limit, error.length) == (1, 2)


class HeldTimers(TestScheduler):
    """A clock whose timers wait until the test runs them: a timer that had already fired when
    the subscription was disposed (on another thread) can run after the disposal."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []
        self.disposables: list[Disposable] = []

    def schedule_relative(self, duetime: Any, action: Any, state: Any = None) -> Any:
        self.held.append(lambda: action(self, state))
        self.disposables.append(Disposable())
        return self.disposables[-1]


def test_a_reconnect_timer_running_after_disposal_does_not_reconnect() -> None:
    subscriptions = 0

    def source(observer: Any, _scheduler: Any = None) -> Any:
        nonlocal subscriptions
        subscriptions += 1
        observer.on_error(DROP)
        return Disposable()

    timers = HeldTimers()
    errors: list[Exception] = []
    subscription = Observable(source).pipe(resume(POLICY, scheduler=timers)).subscribe(
        on_error=errors.append
    )
    assert subscriptions == 1 and len(timers.held) == 1
    subscription.dispose()
    assert timers.disposables[0].is_disposed  # disposal cancels the pending reconnect
    timers.held[0]()  # the reconnect, late: it had fired as the subscription was disposed
    assert subscriptions == 1 and errors == []


def test_once_the_replay_reaches_the_cursor_nothing_more_is_dropped() -> None:
    # The replay ends at the cursor's own item: what follows is new, even an event equal to
    # one delivered before.
    one, two = Item("1", "a"), Item("2", "b")
    assert replay_after([one, two], [one, two, one]) == [one, two, one]
    assert replay_after([one, two], [two, one]) == [one, two, one]  # the cursor first


@pytest.mark.parametrize("reconnected", [False, True])
def test_nothing_is_said_after_an_over_long_id_ended_the_stream(reconnected: bool) -> None:
    # The server sends an over-long id (that reads as the number 1), then, still in flight as
    # the subscription ends (a source emitting as it is subscribed, before its disposal can
    # reach it), a lower id and a drop. The stream ends with EventIdTooLong and nothing more:
    # no warning, no note, no back-off; on the first connection, or after a reconnect from "5".
    connection = iter(range(10))

    def server(observer: Any, _scheduler: Any = None) -> Any:
        if reconnected and next(connection) == 0:
            observer.on_next(Item("5", "a"))
            observer.on_error(DROP)
        else:
            observer.on_next(Item("0" * MAX_ID_LENGTH + "1", "zeros"))
            observer.on_next(Item("1", "b"))
            observer.on_error(DROP)
        return Disposable()

    states: list[ConnectionState] = []
    scheduler = TestScheduler()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = scheduler.start(
            lambda: Observable(server).pipe(resume(POLICY, on_state=states.append))
        )
    assert delivered(result.messages) == ([Item("5", "a")] if reconnected else [])
    assert isinstance(result.messages[-1].value.exception, EventIdTooLong)
    assert [s.kind for s in states] == (["backing_off"] if reconnected else [])
    assert [str(w.message) for w in caught] == []
    if reconnected:
        assert next(connection) == 2  # two connections, no third


def test_disposing_closes_the_live_connection() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, Item("1", "a")))
    result = scheduler.start(lambda: xs.pipe(resume(POLICY)), disposed=250)
    assert delivered(result.messages) == [Item("1", "a")]
    assert xs.subscriptions == [ReactiveTest.subscribe(200, 250)]


def test_a_connection_that_failed_as_it_was_made_is_closed() -> None:
    # The first frame, pushed while the connection is being made, carries an over-long id: the
    # subscription ends at once, and the connection returned afterwards is closed too.
    closed: list[bool] = []

    def server(observer: Any, _scheduler: Any = None) -> Any:
        observer.on_next(Item("9" * (MAX_ID_LENGTH + 1), "a"))
        return Disposable(lambda: closed.append(True))

    errors: list[Exception] = []
    Observable(server).pipe(resume(POLICY, scheduler=TestScheduler())).subscribe(
        on_error=errors.append
    )
    assert len(errors) == 1 and isinstance(errors[0], EventIdTooLong)
    assert closed == [True]


def test_a_reconnect_made_while_the_failed_connection_returns_is_kept() -> None:
    # With no delay on an immediate scheduler the reconnect happens inside the first
    # connection's failure, before its subscribe returns: the new connection is the live one,
    # and the failed one's late return must not replace (and close) it.
    live: reactivex.subject.Subject[Item] = reactivex.subject.Subject()
    connection = iter(range(10))

    def server(observer: Any, _scheduler: Any = None) -> Any:
        if next(connection) == 0:
            observer.on_error(DROP)
            return Disposable()
        return live.subscribe(observer)

    got: list[Item] = []
    subscription = Observable(server).pipe(
        resume(RetryPolicy.immediate(), scheduler=ImmediateScheduler())
    ).subscribe(got.append)
    live.on_next(Item("1", "a"))
    assert got == [Item("1", "a")]
    subscription.dispose()
    assert not live.observers  # disposal closes it


def test_the_connection_is_closed_before_the_subscriber_hears_of_an_over_long_id() -> None:
    # A subscriber that reconnects from its on_error must not find the old connection open.
    scheduler = TestScheduler()
    xs = scheduler.create_cold_observable(on_next(10, Item("9" * (MAX_ID_LENGTH + 1), "a")))
    closed_at: list[int] = []

    def on_error(_error: Exception) -> None:
        closed_at.append(xs.subscriptions[0].unsubscribe)

    xs.pipe(resume(POLICY)).subscribe(on_error=on_error, scheduler=scheduler)
    scheduler.advance_to(100)
    assert closed_at == [10]


class _Id(str):
    """An id of a str subclass (a user's own source may hand those out)."""


def test_ids_of_a_str_subclass_count_their_characters_as_str_ids_do() -> None:
    # Before, an id was counted 64 bytes when remembered (its characters only for an exact
    # str) but 64 plus its characters when forgotten: the count drifted below what was held,
    # so the byte budget held more than it said.
    a, b, c, d = (Item(_Id(ch * 100), ch) for ch in "abcd")
    assert replay_after([a, b, c], [b, c, d], remember_bytes=2 * 164) == [a, b, c, d]
    assert replay_after([a, b, c], [b, c, d], remember_bytes=2 * 164 - 1) == [a, b, c, b, c, d]
