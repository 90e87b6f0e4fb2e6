"""One timer thread for the whole process, for timers that are usually cancelled or re-armed.

Every subscription of ``heartbeat_timeout`` keeps one pending timer. RxPY's
``TimeoutScheduler`` starts a thread per pending timer, so a thousand sessions would hold a
thousand timer threads next to their thousand reader threads. :class:`SharedTimers` keeps all
of them in one heap served by one daemon thread, which exists only while a timer is pending:
when the last one fires or is cancelled, the thread ends, so nothing lingers after the last
subscription is disposed.

Actions run on that thread one after the other: they must be short and must never wait on
anything a subscriber controls (its callbacks, or a lock held while one runs), or every other
timer in the process waits too. Such work goes to :func:`off_timer_thread`. An action that
raises is logged and does not stop the others.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from reactivex import abc, typing
from reactivex.scheduler.scheduler import Scheduler

log = logging.getLogger("rxlens.timers")

#: Seconds before a timeout whose delivery thread could not be started is tried again.
RETRY_HAND_OFF = 1.0


class SharedTimer(abc.DisposableBase):
    """One timer of :class:`SharedTimers`, and its own cancellation (``dispose``).

    ``schedule_relative`` returns it; :meth:`SharedTimers.reschedule` sets it again after it
    fired. Why not a ``Disposable(lambda: ...)`` and a new timer per re-arm: a heartbeat
    re-arms once per silence period, and each of ten thousand sessions keeps one pending. A
    ``Disposable`` holds a lock and a closure (two cells, a function), and a heap entry that
    holds the timer is one more container: objects that live as long as the timer, long
    enough to reach the collector's oldest generation, whose full passes then took longer in
    proportion (measured at 10,000 sessions: a full pass over about 200,000 such objects
    stalled delivery 125 ms, half of them these). A timer set again is the same object, and
    the heap holds only numbers.
    """

    __slots__ = ("action", "cancelled", "order", "owner", "state")

    def __init__(
        self, owner: SharedTimers, action: typing.ScheduledAction[Any], state: Any
    ) -> None:
        self.owner = owner
        self.action = action
        self.state = state
        self.order = -1  # its key in the heap while pending, else -1
        self.cancelled = False  # disposed: never fires again, even if set again

    def dispose(self) -> None:
        if not self.cancelled:  # read without the lock: it only ever turns True
            self.owner._cancel(self)


class SharedTimers(Scheduler):
    """A scheduler whose timers share one thread (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition(threading.Lock())
        # (due, order) pairs; the pending timers by order. A pair whose order is not in
        # ``_live`` is stale (its timer was cancelled or set again) and is skipped.
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, SharedTimer] = {}
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """How many timers have neither fired nor been cancelled."""
        return len(self._live)

    @property
    def running(self) -> bool:
        """Whether the timer thread exists (it does only while a timer is pending)."""
        return self._thread is not None

    def schedule(
        self, action: typing.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        return self.schedule_relative(0.0, action, state)

    def schedule_absolute(
        self, duetime: typing.AbsoluteTime, action: typing.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        return self.schedule_relative(self.to_datetime(duetime) - self.now, action, state)

    def schedule_relative(
        self, duetime: typing.RelativeTime, action: typing.ScheduledAction[Any], state: Any = None
    ) -> SharedTimer:
        timer = SharedTimer(self, action, state)
        self._set(timer, duetime)
        return timer

    def reschedule(self, timer: SharedTimer, duetime: typing.RelativeTime) -> None:
        """Set ``timer`` (made by this scheduler) to fire ``duetime`` from now, with the same
        action and state, whether it fired or is still pending (then only the new time
        counts). A disposed timer stays disposed: this does nothing."""
        if timer.owner is not self:
            raise ValueError("the timer belongs to another scheduler")
        self._set(timer, duetime)

    def _set(self, timer: SharedTimer, duetime: typing.RelativeTime) -> None:
        due = time.monotonic() + max(0.0, self.to_seconds(duetime))
        with self._cond:
            if timer.cancelled:
                return
            if timer.order >= 0:
                del self._live[timer.order]  # its pair in the heap goes stale
            order = next(self._order)
            timer.order = order
            self._live[order] = timer
            heapq.heappush(self._heap, (due, order))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rxlens-timers", daemon=True
                )
                self._thread.start()
            elif self._heap[0][1] == order:
                self._cond.notify()  # due before what the thread waits for

    def _cancel(self, timer: SharedTimer) -> None:
        with self._cond:
            if timer.cancelled:
                return
            timer.cancelled = True
            if timer.order >= 0:
                del self._live[timer.order]
                timer.order = -1
                if not self._live:
                    self._cond.notify()  # nothing left: the thread ends now, not at the old due

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    heap, live = self._heap, self._live
                    while heap and heap[0][1] not in live:
                        heapq.heappop(heap)  # cancelled, or set again
                    if not live:
                        heap.clear()  # only stale pairs are left
                        self._thread = None
                        return
                    due, order = heap[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(heap)
                        timer = live.pop(order)
                        timer.order = -1
                        break
                    self._cond.wait(wait)
            try:
                timer.action(self, timer.state)
            except Exception:
                log.exception("a timer action raised (the other timers go on)")


_shared: SharedTimers | None = None
_shared_lock = threading.Lock()


def shared_timers() -> SharedTimers:
    """The process-wide :class:`SharedTimers`."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SharedTimers()
        return _shared


def off_timer_thread(work: Callable[[], None], name: str = "rxlens-timeout") -> bool:
    """Run ``work`` on a short-lived daemon thread of its own, never on the shared timer thread.

    For what a timer decides but a subscriber's code carries out (delivering a timeout runs
    the user's ``on_error``, which may block): one slow subscriber then delays only itself.
    The thread ends when ``work`` returns; an exception it raises is logged, as for timers.

    Returns False when no thread could be started (the process is at its thread limit): the
    caller keeps its timer and tries again, so that a timeout is late rather than lost (an
    action that raised would only be logged, and the subscription would wait forever).
    """

    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("a timeout delivery raised (the other timers go on)")

    try:
        threading.Thread(target=run, name=name, daemon=True).start()
    except RuntimeError as exc:
        log.warning("could not start a thread to deliver a timeout (%s); trying again", exc)
        return False
    return True
