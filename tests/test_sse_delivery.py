"""How an SSE source hands a read chunk's events to a subscriber (``rxlens.sse._delivery``).

The source's subscriber is, as a rule, the auto-detaching observer ``subscribe()`` wraps around
the subscriber's functions; :func:`deliver` calls those functions directly, checking the
wrapper's ``is_stopped`` itself. The law: that equals calling the wrapper's ``on_next`` (the
obviously-right path, taken for any other observer) in every call, every cursor value seen by
the subscriber, every stop and every error. Pure: no sockets, no threads.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import abc
from reactivex.observer import Observer
from reactivex.observer.autodetachobserver import AutoDetachObserver

from rxlens.errors import StreamClosed, is_downstream
from rxlens.sse import Event
from rxlens.sse._delivery import deliver


class _Cursor:
    def __init__(self) -> None:
        self.last_event_id = ""


class _Boom(Exception):
    pass


class _Wrapped(abc.ObserverBase[Event]):
    """Forwards to an auto-detaching observer through its methods: not recognised as one."""

    def __init__(self, inner: AutoDetachObserver[Event]) -> None:
        self.inner = inner

    def on_next(self, value: Event) -> None:
        self.inner.on_next(value)

    def on_error(self, error: Exception) -> None:
        self.inner.on_error(error)

    def on_completed(self) -> None:
        self.inner.on_completed()


def _run(
    events: list[Event],
    *,
    direct: bool,
    dispose_at: int | None,
    abort_at: int | None,
    raise_at: int | None,
) -> tuple[list[tuple[str, str]], str, str]:
    """Deliver ``events``; the subscriber disposes its wrapper at ``dispose_at`` (what a
    subscription's dispose does first), the handle is aborted at ``abort_at`` and the
    subscriber raises at ``raise_at`` (event indexes). Returns what the subscriber saw (the
    event's data and the cursor at the call), the cursor at the end, and the outcome."""
    cursor = _Cursor()
    seen: list[tuple[str, str]] = []
    aborted = [False]

    def on_next(event: Event) -> None:
        index = len(seen)
        seen.append((event.data, cursor.last_event_id))
        if index == dispose_at:
            detached.dispose()
        if index == abort_at:
            aborted[0] = True
        if index == raise_at:
            raise _Boom(index)

    detached: AutoDetachObserver[Event] = AutoDetachObserver(on_next)
    observer: abc.ObserverBase[Event] = detached if direct else _Wrapped(detached)
    ended = deliver(events, observer, cursor, lambda: aborted[0])
    if ended is None:
        outcome = "none"
    elif isinstance(ended, StreamClosed):
        outcome = f"closed: {ended}"
    else:
        assert is_downstream(ended)
        outcome = f"raised: {ended!r}"
    return seen, cursor.last_event_id, outcome


_events = st.lists(
    st.builds(
        lambda n, named: Event(f"d{n}", "message", str(n) if named else "", None),
        st.integers(0, 99),
        st.booleans(),
    ),
    max_size=12,
)
_index = st.none() | st.integers(0, 12)


@settings(max_examples=300, deadline=None)
@given(_events, _index, _index, _index)
def test_calling_the_subscriber_directly_equals_calling_its_wrapper(
    events: list[Event], dispose_at: int | None, abort_at: int | None, raise_at: int | None
) -> None:
    options: dict[str, Any] = {"dispose_at": dispose_at, "abort_at": abort_at, "raise_at": raise_at}
    assert _run(events, direct=True, **options) == _run(events, direct=False, **options)


def test_the_cursor_is_the_events_own_when_the_subscriber_sees_it() -> None:
    events = [Event("a", "message", "1", "1"), Event("b", "message", "2", "2")]
    seen, last, outcome = _run(events, direct=True, dispose_at=None, abort_at=None, raise_at=None)
    assert seen == [("a", "1"), ("b", "2")] and last == "2" and outcome == "none"


def test_nothing_reaches_a_subscriber_after_it_disposed() -> None:
    events = [Event(str(n), "message", str(n), str(n)) for n in range(5)]
    seen, _, _ = _run(events, direct=True, dispose_at=1, abort_at=None, raise_at=None)
    assert [data for data, _ in seen] == ["0", "1"]


def test_an_abort_stops_the_chunk_at_the_next_event() -> None:
    events = [Event(str(n), "message", str(n), str(n)) for n in range(5)]
    seen, last, outcome = _run(events, direct=True, dispose_at=None, abort_at=2, raise_at=None)
    assert [data for data, _ in seen] == ["0", "1", "2"]
    assert last == "2" and outcome == "closed: disposed"


def test_the_subscribers_exception_comes_back_marked() -> None:
    events = [Event(str(n), "message", str(n), str(n)) for n in range(3)]
    seen, last, outcome = _run(events, direct=True, dispose_at=None, abort_at=None, raise_at=1)
    assert len(seen) == 2 and last == "1" and outcome == "raised: _Boom(1)"


@pytest.mark.parametrize("observer", [Observer, AutoDetachObserver])
def test_an_observer_object_gets_every_event(observer: type[Any]) -> None:
    got: list[Event] = []
    events = [Event("a", "message", "1", "1"), Event("b")]
    assert deliver(events, observer(got.append), _Cursor(), lambda: False) is None
    assert got == events
