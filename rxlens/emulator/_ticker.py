"""One shared timer thread that drives every paced producer of an emulator.

Sessions do not get threads of their own: a scripted lens or a paced playback registers a job
here, and one thread runs each job when it is due. A job returns the time it is next due, or
``None`` when it is finished. The thread starts with the first job and stops on :meth:`close`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

_log = logging.getLogger("rxlens.emulator")

#: A job: called with the time it was due; returns when it is next due (monotonic) or None.
Job = Callable[[float], "float | None"]


class Ticker:
    """A min-heap of due times served by one daemon thread."""

    def __init__(self, name: str = "rxlens-emulator-ticker") -> None:
        self._name = name
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, due: float, job: Job) -> None:
        """Run ``job`` at monotonic time ``due`` (now if already past)."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (due, next(self._seq), job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                due, _, job = heapq.heappop(self._heap)
            try:
                next_due = job(due)
            except Exception:  # a broken job must not stop every other session's producer
                _log.exception("emulator producer failed; it is stopped")
                next_due = None
            if next_due is not None:
                with self._cond:
                    if not self._closed:
                        heapq.heappush(self._heap, (next_due, next(self._seq), job))

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and drop every job. Idempotent."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
