"""``hand_off``: deliver on another thread, through a bounded queue.

With ``LensClient(io="asyncio")`` every session's callbacks run on the one I/O thread, so a
subscriber that blocks (a slow sink, a lock, a plot) holds up every other session. ``hand_off``
takes items off the source's thread at once and delivers them from a thread of the
subscription's own; the queue between the two is bounded, so a subscriber that stays behind
is reported (or its oldest items dropped, and said) instead of growing memory without limit.
"""

from __future__ import annotations

import collections
import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import NewThreadScheduler

from rxlens.errors import ConfigurationError, HandOffOverflow

log = logging.getLogger("rxlens.operators")
_T = TypeVar("_T")

OnFull = Literal["error", "drop_oldest"]

# Queue entries: ("n", item), ("e", error), ("c", None).
_Entry = tuple[str, Any]


def hand_off(
    max_queue: int = 10_000,
    on_full: OnFull = "error",
    *,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Deliver the source's notifications on another thread, through a queue of ``max_queue``.

    The source's thread only appends to the queue; a drain scheduled on ``scheduler`` (default:
    a new thread per burst, so an idle subscription holds no thread) delivers the items in
    order, then the completion or error. When the queue is full:

    - ``on_full="error"``: the subscription ends with :class:`~rxlens.errors.HandOffOverflow`
      after the items already queued, and the source is disposed;
    - ``on_full="drop_oldest"``: the oldest queued item is dropped to make room, with one
      warning per subscription (and the count logged at dispose).

    Disposing drops whatever is queued and disposes the source.

    Marble diagram (``max_queue=2``; the subscriber is still busy with ``a`` while ``b``,
    ``c`` and ``d`` arrive, and done at ``^``)::

        source:                        -a-b-c-d-|
        hand_off(2, "drop_oldest"):    -a-------^c-d-|
        hand_off(2, "error"):          -a-------^b-c-#   (# HandOffOverflow)

    Raises:
        ConfigurationError: ``max_queue`` below 1 or an unknown ``on_full``.
    """
    if max_queue < 1:
        raise ConfigurationError(f"hand_off: max_queue must be at least 1, got {max_queue}")
    if on_full not in ("error", "drop_oldest"):
        raise ConfigurationError(
            f'hand_off: on_full must be "error" or "drop_oldest", got {on_full!r}'
        )

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], _scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            drain_on = scheduler if scheduler is not None else NewThreadScheduler()
            lock = threading.Lock()
            queue: collections.deque[_Entry] = collections.deque()
            upstream = SingleAssignmentDisposable()
            state = {"draining": False, "closed": False, "disposed": False, "dropped": 0}

            def drain(_s: abc.SchedulerBase, _st: Any = None) -> None:
                while True:
                    with lock:
                        if state["disposed"] or not queue:
                            state["draining"] = False
                            return
                        kind, value = queue.popleft()
                    if kind == "n":
                        observer.on_next(value)
                        continue
                    with lock:
                        state["draining"] = False
                        queue.clear()
                    if kind == "e":
                        observer.on_error(value)
                    else:
                        observer.on_completed()
                    return

            def put(entry: _Entry) -> None:
                start = overflow = warn = False
                with lock:
                    if state["closed"] or state["disposed"]:
                        return
                    if entry[0] != "n":
                        state["closed"] = True
                    elif len(queue) >= max_queue:
                        if on_full == "drop_oldest":
                            queue.popleft()
                            state["dropped"] += 1
                            warn = state["dropped"] == 1
                        else:
                            state["closed"] = overflow = True
                            entry = ("e", HandOffOverflow(max_queue))
                    queue.append(entry)
                    if not state["draining"]:
                        state["draining"] = start = True
                if warn:
                    warnings.warn(
                        f"hand_off: the subscriber is {max_queue} items behind; dropping the "
                        "oldest queued items",
                        stacklevel=2,
                    )
                if overflow:
                    upstream.dispose()
                if start:
                    drain_on.schedule(drain)

            def on_next(item: _T) -> None:
                put(("n", item))

            def on_error(error: Exception) -> None:
                put(("e", error))

            def on_completed() -> None:
                put(("c", None))

            def dispose() -> None:
                with lock:
                    state["disposed"] = True
                    queue.clear()
                if state["dropped"]:
                    log.info("hand_off dropped %d item(s)", state["dropped"])

            upstream.disposable = source.subscribe(on_next, on_error, on_completed)
            return CompositeDisposable(Disposable(dispose), upstream)

        return Observable(subscribe)

    return operator
