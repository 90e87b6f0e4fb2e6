"""Lens streams in ``asyncio`` code: ``async for`` over an Observable, and ``await`` on one.

rxlens streams emit on their own reader threads. An asyncio event loop must be woken from
another thread through :meth:`asyncio.AbstractEventLoop.call_soon_threadsafe`; RxPY's own
``await observable`` sets its future from the emitting thread instead, so with a thread-fed
Observable the loop only notices the result when something else wakes it (measured: an
``await`` on an Observable that completed after 0.2 s returned after the 3 s timeout
around it). The helpers here hand every notification over thread-safely, so they work in any
running loop, a Jupyter notebook's included::

    from reactivex import operators as ops

    async for event in rxlens.aio.iterate(client.events(sid).pipe(only_results(), ops.take(5))):
        print(event.label)

    # A live session's stream does not complete: bound it before waiting for its last item.
    windows = results.pipe(window_results(count=10), ops.take(3))
    third_window = await rxlens.aio.to_future(windows.pipe(ops.last()))
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from reactivex import Observable, abc

from rxlens._deprecation import module_getattr
from rxlens.errors import EmptyStream

_T = TypeVar("_T")

_NEXT, _ERROR, _DONE = 0, 1, 2


async def iterate(
    source: Observable[_T], *, scheduler: abc.SchedulerBase | None = None
) -> AsyncIterator[_T]:
    """Iterate an Observable's items with ``async for``, on the running event loop.

    The subscription starts at the first iteration and is disposed when the loop ends: the
    stream completed, it failed (its error is raised in the ``async for``), or the consumer
    left early (``break``, an exception, cancellation of the task). Items wait in an
    unbounded queue when they come faster than the loop body takes them. ``scheduler`` is
    passed to ``subscribe``.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    def hand_over(kind: int, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:
            pass  # the loop is closed: nobody is left to iterate

    subscription = source.subscribe(
        lambda item: hand_over(_NEXT, item),
        lambda error: hand_over(_ERROR, error),
        lambda: hand_over(_DONE, None),
        scheduler=scheduler,
    )
    try:
        while True:
            kind, value = await queue.get()
            if kind == _NEXT:
                yield value
            elif kind == _ERROR:
                raise value
            else:
                return
    finally:
        subscription.dispose()


def to_future(
    source: Observable[_T],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> asyncio.Future[_T]:
    """A future of the stream's last item (what ``await observable`` means in RxPY).

    It resolves on ``loop`` (default: the running one) when the stream completes, with its
    last item, or with :class:`EmptyStream` if there was none; a stream error becomes the
    future's exception. Cancelling the future disposes the subscription. Unlike RxPY's own
    ``await``, every hand-over goes through ``call_soon_threadsafe``, so the loop wakes at
    once whatever thread the stream emits on.
    """
    target = loop if loop is not None else asyncio.get_running_loop()
    future: asyncio.Future[_T] = target.create_future()
    last: list[_T] = []

    def settle(kind: int, value: Any) -> None:
        if future.done():
            return
        if kind == _ERROR:
            future.set_exception(value)
        elif last:
            future.set_result(last[-1])
        else:
            future.set_exception(EmptyStream("the stream completed without an item"))

    def hand_over(kind: int, value: Any) -> None:
        try:
            target.call_soon_threadsafe(settle, kind, value)
        except RuntimeError:
            pass  # the loop is closed

    def on_next(item: _T) -> None:
        if last:
            last[0] = item
        else:
            last.append(item)

    subscription = source.subscribe(
        on_next,
        lambda error: hand_over(_ERROR, error),
        lambda: hand_over(_DONE, None),
        scheduler=scheduler,
    )
    future.add_done_callback(lambda _: subscription.dispose())
    return future


#: ``aiter`` shadowed the built-in of that name; served for one more release, with a warning.
__getattr__ = module_getattr(__name__, {"aiter": ("rxlens.aio.iterate", lambda: iterate)})

__all__ = ["EmptyStream", "iterate", "to_future"]
