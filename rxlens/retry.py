"""When and how long to wait before reconnecting: an immutable policy and its pure state.

:class:`RetryPolicy` is a value. Its :meth:`~RetryPolicy.decide` takes the error, the state of
the current run of failures and how long the failed connection was healthy, and returns a
:class:`Decision` with the next state, so the whole policy is testable without time passing.
:func:`rxlens.operators.resume` applies it on a scheduler.

The delay for the n-th consecutive failure is ``d = min(cap, base * multiplier ** (n - 1))``,
then jittered down by up to ``jitter`` of itself (drawn uniformly: with ``jitter=0.5`` the delay
lies in ``[d / 2, d]``), so that many clients dropped together do not reconnect together.

Server hints are honoured, within the policy's bounds:

- an SSE ``retry:`` field is the stream's reconnection time, so it is a floor: it replaces
  ``base`` and the jitter only adds to the delay (within ``[d, d * (1 + jitter)]``), never
  reconnecting sooner than the server asked;
- an HTTP ``Retry-After`` is a floor too;
- every delay is clamped to ``[0, cap]`` (a ``retry:`` of any size included).

A run of failures starts again (the attempt count, and with it the back-off and the
``max_attempts`` / ``max_elapsed`` budget) after a connection that stayed healthy for
``reset_after`` seconds or more, and after a clean end of stream: a
:class:`~rxlens.errors.StreamClosed` at an event boundary from a connection that delivered at
least one event. The server ended that stream, nothing failed, so the next reconnect waits the
first delay of a run (``base``, or the ``retry:`` in force), as a browser's ``EventSource``
does. A connection that ends without delivering anything, or mid-event, is a failure.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from rxlens.errors import is_downstream


def is_retryable(error: BaseException) -> bool:
    """The default predicate: rxlens errors that say they are retryable (see rxlens.errors)."""
    if is_downstream(error):
        return False  # raised by the subscriber's own code, not by the network
    return bool(getattr(error, "retryable", False))


@dataclass(frozen=True)
class RetryState:
    """Where a run of consecutive failures stands (immutable)."""

    #: Failures in the current run (0 before the first).
    attempt: int = 0
    #: Scheduler time (seconds) of the run's first failure, or None before it.
    started_at: float | None = None
    #: How many random draws the run has used (keeps seeded jitter deterministic).
    draws: int = 0


class Decision(NamedTuple):
    """What to do after a failure."""

    retry: bool
    delay: float
    state: RetryState
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    """An immutable reconnection policy. See the module docstring for the rules.

    >>> RetryPolicy()
    RetryPolicy(base=1.0, multiplier=2.0, cap=30.0, jitter=0.5, reset_after=60.0, \
max_attempts=None, max_elapsed=None, seed=None)
    """

    base: float = 1.0
    multiplier: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5
    reset_after: float = 60.0
    max_attempts: int | None = None
    max_elapsed: float | None = None
    seed: int | None = None
    retryable: Callable[[BaseException], bool] = field(default=is_retryable, repr=False)

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must lie in [0, 1]")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must not be negative")
        if self.max_elapsed is not None and self.max_elapsed < 0:
            raise ValueError("max_elapsed must not be negative")

    # -- factories --------------------------------------------------------------------------

    @classmethod
    def default(cls) -> RetryPolicy:
        """Base 1 s, multiplier 2, cap 30 s, jitter 0.5, reset after 60 s healthy, no limit."""
        return cls()

    @classmethod
    def never(cls) -> RetryPolicy:
        """Never reconnect: every error goes straight to the subscriber."""
        return cls(max_attempts=0)

    @classmethod
    def immediate(cls, max_attempts: int | None = None) -> RetryPolicy:
        """Reconnect at once, with no delay (tests, local servers)."""
        return cls(base=0.0, cap=0.0, jitter=0.0, max_attempts=max_attempts)

    # -- the rule ---------------------------------------------------------------------------

    def backoff(self, attempt: int, base: float | None = None) -> float:
        """The un-jittered delay for the ``attempt``-th consecutive failure (1-based)."""
        start = self.base if base is None else base
        if attempt <= 1:
            return min(self.cap, start)
        # Capping the exponent keeps huge attempt counts from overflowing the float.
        exponent = min(attempt - 1, 1024)
        try:
            grown = start * self.multiplier**exponent
        except OverflowError:
            grown = float("inf")
        return min(self.cap, grown)

    def bounds(self, attempt: int, base: float | None = None) -> tuple[float, float]:
        """The interval the jittered delay for ``attempt`` lies in (without a Retry-After).

        ``base`` is a ``retry:`` hint in seconds: a floor, so jitter adds to it.
        """
        top = self.backoff(attempt, base)
        if base is None:
            return top * (1 - self.jitter), top
        return top, min(self.cap, top * (1 + self.jitter))

    def decide(
        self,
        error: BaseException,
        state: RetryState,
        *,
        now: float,
        healthy_for: float = 0.0,
        delivered: bool = False,
        retry_ms: int | None = None,
        retry_after: float | None = None,
    ) -> Decision:
        """Whether to reconnect after ``error``, and after how long.

        ``now`` is the scheduler's time in seconds; ``healthy_for`` how long the connection that
        just failed was open and delivering; ``delivered`` whether it delivered anything (with
        a clean end of stream, that makes it no failure); ``retry_ms`` the stream's last valid
        ``retry:`` field (any size); ``retry_after`` a ``Retry-After`` in seconds.
        ``retry_after`` defaults to the error's own ``retry_after`` attribute.
        """
        if not self.retryable(error):
            return Decision(False, 0.0, state, f"not retryable: {type(error).__name__}")
        if healthy_for >= self.reset_after or (delivered and getattr(error, "clean", False)):
            state = RetryState()
        attempt = state.attempt + 1
        started = now if state.started_at is None else state.started_at
        draws = state.draws
        next_state = RetryState(attempt, started, draws + 1)
        if self.max_attempts is not None and attempt > self.max_attempts:
            return Decision(False, 0.0, next_state, f"max_attempts={self.max_attempts} reached")
        if self.max_elapsed is not None and now - started > self.max_elapsed:
            return Decision(False, 0.0, next_state, f"max_elapsed={self.max_elapsed:g}s reached")

        if retry_ms is None:
            delay = self.backoff(attempt) * (1 - self.jitter * self._draw(draws))
        else:
            # The server's reconnection time is a floor: the back-off grows from it and the
            # jitter only adds. Compared as an int first, so no size of it can overflow.
            hint = self.cap if retry_ms >= self.cap * 1000 else max(retry_ms, 0) / 1000.0
            delay = self.backoff(attempt, hint) * (1 + self.jitter * self._draw(draws))
        if retry_after is None:
            retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        delay = min(max(delay, 0.0), self.cap)
        return Decision(True, delay, next_state, f"attempt {attempt}")

    def _draw(self, n: int) -> float:
        if self.seed is None:
            return random.random()
        return random.Random(self.seed * 1_000_003 + n).random()
