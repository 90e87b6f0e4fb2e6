"""``resume``: reconnect after retryable errors, and drop what the server replays, nothing else.

Why it needs care: a server's ids are not a key. They may repeat (second-resolution timestamps),
start again from 1 (a restarted server), or be huge (a hostile one). So the cursor and the memory
of delivered ids belong to one subscription, only events sent again after a reconnect can be
dropped, and that memory is bounded. The rules are in SECURITY.md ("exactly once").
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import deque
from collections.abc import Callable, Hashable
from typing import Protocol, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxlens.errors import (
    ClientClosed,
    EventIdTooLong,
    LocalError,
    RetriesExhausted,
    is_downstream,
    mark_downstream,
)
from rxlens.retry import Decision, RetryPolicy, RetryState
from rxlens.sse._closing import Waiting, closer_of
from rxlens.sse._state import ConnectionState, StateCallback, StateKind, report
from rxlens.sse._transport import safe_url

_T = TypeVar("_T")
log = logging.getLogger("rxlens.resume")

#: How many recent event ids ``resume`` remembers (per subscription) to recognise a replay.
DEFAULT_REMEMBER = 10_000
#: How many bytes that memory may take: each id counts its length plus :data:`ENTRY_OVERHEAD`.
DEFAULT_REMEMBER_BYTES = 4 * 2**20
#: Bytes counted per remembered id besides its characters (its share of the bookkeeping).
ENTRY_OVERHEAD = 64
#: The longest event id ``resume`` accepts (characters); a longer one is
#: :class:`~rxlens.errors.EventIdTooLong`. The Lens server's ids are short integers.
MAX_ID_LENGTH = 1024


class Cursor(Protocol):
    """Where a connection resumes from: an :class:`rxlens.sse.SSESource` or a typed source.

    ``last_event_id`` is the ``Last-Event-ID`` the next connection sends; ``url`` names the
    stream in state reports.
    """

    @property
    def url(self) -> str: ...

    @property
    def last_event_id(self) -> str: ...


def _content(item: object) -> Hashable:
    """What an item says (its ``raw`` or ``data`` text), to tell a replay from a reused id."""
    value = getattr(item, "raw", None)
    if value.__class__ is str:
        return hash(value)
    value = getattr(item, "data", None)
    return hash(value) if isinstance(value, str) else None


def _numeric_before(key: str, cursor: str) -> bool:
    """Whether both are decimal numbers and ``key`` is the smaller (no int() of long text)."""
    if not (key.isascii() and key.isdigit() and cursor.isascii() and cursor.isdigit()):
        return False
    a, b = key.lstrip("0"), cursor.lstrip("0")
    return (len(a), a) < (len(b), b)


def _show(key: str) -> str:
    """An id as a message may quote it: short numbers as they are, anything else by length."""
    if key.isascii() and key.isdigit() and len(key) <= 20:
        return key
    return f"<an id of {len(key)} characters>"


class _Memory:
    """The (id, content) pairs one subscription delivered; the oldest go first, past a count
    or a byte budget.

    Adding is the per-event cost, so it only appends; the lookup tables a replay check needs
    are built when a reconnect opens a replay window (:meth:`window`), at most ``count``
    entries once per reconnect.
    """

    __slots__ = ("_budget", "_bytes", "_count", "_order")

    def __init__(self, count: int, budget: int) -> None:
        self._count = count
        self._budget = budget
        self._bytes = 0
        self._order: deque[tuple[Hashable, Hashable]] = deque()

    def add(self, key: Hashable, content: Hashable) -> None:
        order = self._order
        if len(order) >= self._count:
            if not self._count:
                return
            self._bytes -= _size(order.popleft()[0])
        order.append((key, content))
        self._bytes += (len(key) if isinstance(key, str) else 0) + ENTRY_OVERHEAD  # _size(key)
        if self._bytes > self._budget:
            while self._bytes > self._budget and order:
                self._bytes -= _size(order.popleft()[0])

    def window(self) -> _Window:
        return _Window(set(self._order), {key for key, _ in self._order})


def _report(
    on_state: StateCallback | None,
    kind: StateKind,
    where: Callable[[], tuple[str, str]],
    at: float,
    attempt: int = 0,
    delay: float | None = None,
    error: Exception | None = None,
    note: str = "",
) -> None:
    """Tell ``on_state`` of ``kind`` (the cursor's URL and id read from ``where`` only then)."""
    if on_state is not None:
        url, last_event_id = where()
        report(
            on_state,
            ConnectionState(
                kind,
                url,
                last_event_id=last_event_id,
                attempt=attempt,
                delay=delay,
                error=error,
                at=at,
                note=note,
            ),
        )


def _went_back_note(resumed_from: str, key: Hashable) -> str:
    """The warning for ids that went back after a reconnect (resumed after ``resumed_from``)."""
    shown = _show(key) if isinstance(key, str) else repr(type(key))
    return (
        f"the server's event ids went back after the reconnect (resumed after "
        f"{_show(resumed_from) if resumed_from else 'no id'}, then got {shown}): it "
        "restarted or reuses ids; its events are delivered as new, none dropped "
        "(some may repeat earlier ones)"
    )


def _decide(
    policy: RetryPolicy, state: _State, error: Exception, now: float
) -> Decision | LocalError:
    """The policy's decision on a connection's ``error``, or, when the policy itself raised,
    the typed error the stream ends with (never a hang)."""
    first_at = state.first_at
    try:
        return policy.decide(
            error,
            state.retry,
            now=now,
            healthy_for=0.0 if first_at is None else now - first_at,
            delivered=first_at is not None,
            retry_ms=getattr(error, "retry_ms", None),
        )
    except Exception as exc:
        failure = LocalError(f"the retry policy raised {type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        return failure


def _final_error(
    policy: RetryPolicy, decision: Decision, error: Exception, now: float
) -> Exception:
    """What the stream ends with when the policy gives up: ``error`` itself when it is not
    retryable, else :class:`RetriesExhausted` caused by it."""
    if not policy.retryable(error):
        return error
    started = decision.state.started_at
    final = RetriesExhausted(
        decision.state.attempt - 1, 0.0 if started is None else now - started, error
    )
    final.__cause__ = error
    return final


def _size(key: Hashable) -> int:
    return (len(key) if isinstance(key, str) else 0) + ENTRY_OVERHEAD


class _Window:
    """What a reconnect may see again: the remembered pairs, and the ids alone."""

    __slots__ = ("ids", "pairs")

    def __init__(self, pairs: set[tuple[Hashable, Hashable]], ids: set[Hashable]) -> None:
        self.pairs = pairs
        self.ids = ids


class _State:
    """The mutable state of one ``resume`` subscription."""

    __slots__ = ("done", "first_at", "generation", "last_id", "resumed_from", "retry", "window")

    def __init__(self) -> None:
        self.retry = RetryState()
        self.generation = 0
        self.first_at: float | None = None
        self.done = False
        #: The last id this subscription delivered (the cursor when none is given).
        self.last_id = ""
        #: After a reconnect: the cursor it resumed from, and (until the replay is over) what
        #: the server may send again.
        self.resumed_from = ""
        self.window: _Window | None = None


def resume(
    policy: RetryPolicy | None = None,
    *,
    cursor: Cursor | None = None,
    remember: int = DEFAULT_REMEMBER,
    remember_bytes: int = DEFAULT_REMEMBER_BYTES,
    max_id_length: int = MAX_ID_LENGTH,
    on_state: StateCallback | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Re-subscribe upstream after a retryable error, after the policy's delay.

    ``cursor`` is where the connection resumes from (any object with ``url`` and
    ``last_event_id``, such as the :class:`rxlens.sse.SSESource` upstream, which sends its
    ``last_event_id`` as ``Last-Event-ID`` on each new connection). Without one, ``resume``
    keeps its own: the last ``id`` it delivered. The states it reports carry both.

    Which items are dropped (the ``id`` attribute of an item is its SSE id; items without one
    always pass):

    - after a reconnect, the server may send again what it sent before the cursor: an item
      with the same id and the same content (its ``raw`` or ``data`` text) as one this
      subscription delivered is dropped, until the cursor's own item or the first new one;
    - nothing else: ids repeated on one connection (timestamps) all pass;
    - ids that go back after a reconnect (an id seen before with other content, or a number
      below the cursor: a restarted server) pass, with a ``UserWarning`` and an ``"open"``
      state whose ``note`` says so.

    The memory of delivered ids keeps the last ``remember`` of them within ``remember_bytes``
    (each id counts its length plus :data:`ENTRY_OVERHEAD`); a replay longer than that is
    delivered again (at least once, never lost). An id longer than ``max_id_length``
    characters ends the subscription with :class:`~rxlens.errors.EventIdTooLong`.

    A non-retryable error (see :func:`rxlens.retry.is_retryable`), and any exception raised by
    the subscriber's own ``on_next``, reach the subscriber unchanged and at once. When the
    policy gives up on a retryable error, the subscriber gets :class:`rxlens.errors.
    RetriesExhausted` with the last error as ``last_error`` and ``__cause__``.

    When the cursor (or the source right upstream) was made by a :class:`rxlens.LensClient`,
    closing that client while a reconnect waits out its delay ends the subscription at once
    with :class:`rxlens.errors.ClientClosed`, as it ends an open connection.

    All state (the retry budget, the remembered ids) lives in the subscription: subscribing the
    same pipeline again starts afresh. A ``cursor`` object is shared by the subscriptions of
    the pipeline it belongs to: build one pipeline per subscription (``reactivex.defer``, as
    :meth:`rxlens.LensClient.events` does) when you subscribe more than once. Put ``resume``
    upstream of any ``share()``: a shared subscription does not re-subscribe its source.
    Delays run on ``scheduler`` (default: the subscribe-time scheduler, else a timer thread),
    so virtual time tests them.

    ``on_state`` receives ``"backing_off"`` (with ``attempt``, ``delay`` and ``error``) and
    ``"failed"`` states, and the ``"open"`` note above.

    Marble (drop at ``x``, policy delay 2)::

        upstream 1st:  -1-2-x
        upstream 2nd:          -2-3-|      (the server replays 2)
        resume():      -1-2-------3-|

    Raises:
        ValueError: ``remember`` or ``remember_bytes`` is negative, or ``max_id_length`` is
            not positive.
    """
    chosen = policy if policy is not None else RetryPolicy()
    if remember < 0:
        raise ValueError("remember must not be negative")
    if remember_bytes < 0:
        raise ValueError("remember_bytes must not be negative")
    if max_id_length < 1:
        raise ValueError("max_id_length must be positive")

    def _resume(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = scheduler or subscribe_scheduler or TimeoutScheduler.singleton()
            upstream = SerialDisposable()
            timer = SerialDisposable()
            lock = threading.RLock()
            memory = _Memory(remember, remember_bytes)
            state = _State()
            # A wait for the next attempt ends at once at LensClient.close() (the closer of the
            # client that made the cursor or the source, when one did).
            waiting = Waiting(closer_of(cursor, source))

            def now() -> float:
                return sched.to_seconds(sched.now)

            def where() -> tuple[str, str]:
                if cursor is None:
                    return "", state.last_id
                return safe_url(cursor.url), cursor.last_event_id

            def tell(
                kind: StateKind,
                attempt: int = 0,
                delay: float | None = None,
                error: Exception | None = None,
                note: str = "",
            ) -> None:
                _report(on_state, kind, where, now(), attempt, delay, error, note)

            def went_back(key: Hashable) -> None:
                note = _went_back_note(state.resumed_from, key)
                log.warning("%s", note)
                warnings.warn(note, UserWarning, stacklevel=2)
                tell("open", note=note)

            def fail(error: Exception) -> None:
                state.done = True
                upstream.dispose()
                observer.on_error(error)

            def client_closed() -> None:
                timer.dispose()
                with lock:
                    if state.done:
                        return
                    state.done = True
                    observer.on_error(ClientClosed())

            def subscribe_upstream() -> None:
                waiting.stop()
                with lock:
                    if state.done:
                        return
                    state.generation += 1
                    generation = state.generation
                    state.first_at = None
                    if generation > 1:
                        # The window in which the server may send again what it sent before.
                        state.resumed_from = where()[1]
                        state.window = memory.window()

                def on_next(item: _T) -> None:
                    with lock:
                        if generation != state.generation or state.done:
                            return
                        if state.first_at is None:
                            state.first_at = now()
                        key = getattr(item, "id", None)
                        if key is not None:
                            if isinstance(key, str) and len(key) > max_id_length:
                                fail(EventIdTooLong(max_id_length, len(key)))
                                return
                            content = _content(item)
                            window = state.window
                            if window is not None:
                                if (key, content) in window.pairs:
                                    log.debug("dropped a replayed event (id %s)", _show(str(key)))
                                    if key == state.resumed_from:
                                        state.window = None  # the replay reached the cursor
                                    return
                                state.window = None
                                if key in window.ids or (
                                    isinstance(key, str)
                                    and _numeric_before(key, state.resumed_from)
                                ):
                                    went_back(key)
                            memory.add(key, content)
                            if isinstance(key, str):
                                state.last_id = key
                        try:
                            observer.on_next(item)
                        except Exception as exc:
                            fail(mark_downstream(exc))

                def on_error(error: Exception) -> None:
                    with lock:
                        if generation != state.generation or state.done:
                            return
                        if is_downstream(error):
                            state.done = True
                            observer.on_error(error)
                            return
                        decision = _decide(chosen, state, error, now())
                        if isinstance(decision, LocalError):  # the policy failed
                            state.done = True
                            observer.on_error(decision)
                            return
                        state.retry = decision.state
                        if not decision.retry:
                            state.done = True
                            final = _final_error(chosen, decision, error, now())
                            tell("failed", decision.state.attempt, None, error)
                            log.info("giving up: %s (%s)", decision.reason, error)
                            observer.on_error(final)
                            return
                        tell("backing_off", decision.state.attempt, decision.delay, error)
                        log.info(
                            "reconnecting in %.2f s (%s): %s",
                            decision.delay,
                            decision.reason,
                            error,
                        )
                        upstream.disposable = Disposable()  # drop the failed subscription
                        timer.disposable = sched.schedule_relative(
                            decision.delay, lambda _s, _st: subscribe_upstream()
                        )
                        waiting.start(client_closed)

                def on_completed() -> None:
                    with lock:
                        if generation != state.generation or state.done:
                            return
                        state.done = True
                        observer.on_completed()

                subscription = source.subscribe(
                    on_next, on_error, on_completed, scheduler=subscribe_scheduler
                )
                with lock:
                    if generation == state.generation and not state.done:
                        upstream.disposable = subscription
                        return
                subscription.dispose()

            def dispose() -> None:
                # No lock: a subscriber blocked in on_next must not delay disposal.
                state.done = True
                timer.dispose()
                waiting.stop()  # the client's closer must not keep a disposed subscription
                upstream.dispose()

            subscribe_upstream()
            return CompositeDisposable(Disposable(dispose))

        return Observable(subscribe)

    return _resume
