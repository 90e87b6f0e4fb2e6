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
from reactivex.disposable import Disposable
from reactivex.scheduler.scheduler import Scheduler

log = logging.getLogger("rxlens.timers")


class _Entry:
    __slots__ = ("action", "done", "state")

    def __init__(self, action: typing.ScheduledAction[Any], state: Any) -> None:
        self.action = action
        self.state = state
        self.done = False  # fired or cancelled


class SharedTimers(Scheduler):
    """A scheduler whose timers share one thread (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Entry]] = []
        self._pending = 0
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """How many timers have neither fired nor been cancelled."""
        return self._pending

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
    ) -> abc.DisposableBase:
        due = time.monotonic() + max(0.0, self.to_seconds(duetime))
        entry = _Entry(action, state)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._order), entry))
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rxlens-timers", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()
        return Disposable(lambda: self._cancel(entry))

    def _cancel(self, entry: _Entry) -> None:
        with self._cond:
            if entry.done:
                return
            entry.done = True
            self._pending -= 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    heap = self._heap
                    while heap and heap[0][2].done:
                        heapq.heappop(heap)  # cancelled
                    if not self._pending:
                        heap.clear()  # only cancelled entries are left
                        self._thread = None
                        return
                    due, _, entry = heap[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(heap)
                        entry.done = True
                        self._pending -= 1
                        break
                    self._cond.wait(wait)
            try:
                entry.action(self, entry.state)
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


def off_timer_thread(work: Callable[[], None], name: str = "rxlens-timeout") -> None:
    """Run ``work`` on a short-lived daemon thread of its own, never on the shared timer thread.

    For what a timer decides but a subscriber's code carries out (delivering a timeout runs
    the user's ``on_error``, which may block): one slow subscriber then delays only itself.
    The thread ends when ``work`` returns; an exception it raises is logged, as for timers.
    """

    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("a timeout delivery raised (the other timers go on)")

    threading.Thread(target=run, name=name, daemon=True).start()
