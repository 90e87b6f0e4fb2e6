"""``resume``: reconnect after retryable errors, and never deliver an event twice."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxlens.errors import LocalError, RetriesExhausted
from rxlens.retry import RetryPolicy, RetryState
from rxlens.sse._connect import mark_downstream
from rxlens.sse._state import ConnectionState, StateCallback, StateKind, report

_T = TypeVar("_T")
log = logging.getLogger("rxlens.resume")

#: How many recent event ids ``resume`` remembers to drop replayed events.
DEFAULT_REMEMBER = 10_000


class _State:
    """The mutable state of one ``resume`` subscription."""

    __slots__ = ("done", "first_at", "generation", "retry")

    def __init__(self) -> None:
        self.retry = RetryState()
        self.generation = 0
        self.first_at: float | None = None
        self.done = False


def resume(
    policy: RetryPolicy | None = None,
    *,
    remember: int = DEFAULT_REMEMBER,
    on_state: StateCallback | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Re-subscribe upstream after a retryable error, after the policy's delay.

    An :class:`rxlens.sse.SSESource` upstream reconnects with ``Last-Event-ID`` set from its
    cursor, so the stream continues where it broke. Items whose ``id`` attribute (the SSE id of
    the frame) was already delivered are dropped, which makes a server that replays harmless; the
    last ``remember`` ids are kept. Items without an id always pass.

    A non-retryable error (see :func:`rxlens.retry.is_retryable`), and any exception raised by
    the subscriber's own ``on_next``, reach the subscriber unchanged and at once. When the
    policy gives up on a retryable error, the subscriber gets :class:`rxlens.errors.
    RetriesExhausted` with the last error as ``last_error`` and ``__cause__``.

    All state (the retry budget, the remembered ids) lives in the subscription: subscribing the
    same pipeline again starts afresh. Put ``resume`` upstream of any ``share()``: a shared
    subscription does not re-subscribe its source. Delays run on ``scheduler`` (default: the
    subscribe-time scheduler, else a timer thread), so virtual time tests them.

    ``on_state`` receives ``"backing_off"`` (with ``attempt``, ``delay`` and ``error``) and
    ``"failed"`` states.

    Marble (drop at ``x``, policy delay 2)::

        upstream 1st:  -1-2-x
        upstream 2nd:          -2-3-|      (the server replays 2)
        resume():      -1-2-------3-|
    """
    chosen = policy if policy is not None else RetryPolicy()
    if remember < 0:
        raise ValueError("remember must not be negative")

    def _resume(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = scheduler or subscribe_scheduler or TimeoutScheduler.singleton()
            upstream = SerialDisposable()
            timer = SerialDisposable()
            lock = threading.RLock()
            seen: set[Any] = set()
            order: deque[Any] = deque()
            state = _State()

            def now() -> float:
                return sched.to_seconds(sched.now)

            def tell(kind: StateKind, attempt: int, delay: float | None, error: Exception) -> None:
                if on_state is not None:
                    report(
                        on_state,
                        ConnectionState(
                            kind,
                            getattr(source, "url", ""),
                            last_event_id=getattr(source, "last_event_id", ""),
                            attempt=attempt,
                            delay=delay,
                            error=error,
                            at=now(),
                        ),
                    )

            def forward_downstream_error(error: Exception) -> None:
                state.done = True
                upstream.dispose()
                observer.on_error(mark_downstream(error))

            def subscribe_upstream() -> None:
                with lock:
                    if state.done:
                        return
                    state.generation += 1
                    generation = state.generation
                    state.first_at = None

                def on_next(item: _T) -> None:
                    with lock:
                        if generation != state.generation or state.done:
                            return
                        if state.first_at is None:
                            state.first_at = now()
                        if remember:
                            key = getattr(item, "id", None)
                            if key is not None:
                                if key in seen:
                                    log.debug("dropped replayed event id %r", key)
                                    return
                                seen.add(key)
                                order.append(key)
                                if len(order) > remember:
                                    seen.discard(order.popleft())
                        try:
                            observer.on_next(item)
                        except Exception as exc:
                            forward_downstream_error(exc)

                def on_error(error: Exception) -> None:
                    with lock:
                        if generation != state.generation or state.done:
                            return
                        if getattr(error, "_rxlens_downstream", False):
                            state.done = True
                            observer.on_error(error)
                            return
                        first_at = state.first_at
                        healthy = 0.0 if first_at is None else now() - first_at
                        try:
                            decision = chosen.decide(
                                error,
                                state.retry,
                                now=now(),
                                healthy_for=healthy,
                                delivered=first_at is not None,
                                retry_ms=getattr(error, "retry_ms", None),
                            )
                        except Exception as exc:  # the policy failed: end, typed, never hang
                            state.done = True
                            failure = LocalError(
                                f"the retry policy raised {type(exc).__name__}: {exc}"
                            )
                            failure.__cause__ = exc
                            observer.on_error(failure)
                            return
                        state.retry = decision.state
                        if not decision.retry:
                            state.done = True
                            final: Exception = error
                            if chosen.retryable(error):
                                started = decision.state.started_at
                                final = RetriesExhausted(
                                    decision.state.attempt - 1,
                                    0.0 if started is None else now() - started,
                                    error,
                                )
                                final.__cause__ = error
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
                upstream.dispose()

            subscribe_upstream()
            return CompositeDisposable(Disposable(dispose))

        return Observable(subscribe)

    return _resume
