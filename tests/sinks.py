"""A recording observer for end-to-end tests, with waits bounded in time."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any


class Sink:
    """Collects what a subscription delivers: items, the error or the completion."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.error: Exception | None = None
        self.completed = False
        self.done = threading.Event()
        self.arrived: queue.Queue[Any] = queue.Queue()

    def on_next(self, item: Any) -> None:
        self.items.append(item)
        self.arrived.put(item)

    def on_error(self, error: Exception) -> None:
        self.error = error
        self.done.set()

    def on_completed(self) -> None:
        self.completed = True
        self.done.set()

    def wait(self, timeout: float = 10.0) -> Sink:
        """Wait for the error or the completion."""
        assert self.done.wait(timeout), f"stream did not end; got {len(self.items)} items"
        return self

    def wait_for(self, predicate: Callable[[list[Any]], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(items)`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.items):
            assert time.monotonic() < deadline, f"timed out with {len(self.items)} items"
            time.sleep(0.005)

    def wait_items(self, n: int, timeout: float = 10.0) -> None:
        """Wait until at least ``n`` items arrived."""
        self.wait_for(lambda items: len(items) >= n, timeout)


def subscribe(observable: Any) -> tuple[Sink, Any]:
    """Subscribe a new :class:`Sink`; returns it and the subscription."""
    sink = Sink()
    return sink, observable.subscribe(sink.on_next, sink.on_error, sink.on_completed)
