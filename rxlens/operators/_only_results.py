"""``only_results``: keep the lens output, drop the stream's bookkeeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc

from rxlens.events import InferenceResult
from rxlens.operators._preset import Narrowable


def only_results() -> Callable[[Observable[Any]], Observable[InferenceResult]]:
    """Pass only :class:`~rxlens.events.InferenceResult` events; drop every other event.

    Heartbeats, stream starts and ends, log lines, unknown and malformed events are dropped, so
    put the operators that need them first: ``heartbeat_timeout`` (every event is a sign of
    life) and ``until_end`` (the end event) go before ``only_results``. Errors and completion
    pass through unchanged.

    Marble diagram (``s`` stream start, ``h`` heartbeat, ``r`` result, ``e`` stream end)::

        source:          -s-h-r-h-r-e-|
        only_results():  -----r---r---|
    """

    def operator(source: Observable[Any]) -> Observable[InferenceResult]:
        if isinstance(source, Narrowable):
            # The preset (client.events()) filters in its own loop: the same items, errors
            # and completion, without this operator's observers per event.
            return source.narrowed(InferenceResult)

        def subscribe(
            observer: abc.ObserverBase[InferenceResult],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            def on_next(event: Any) -> None:
                if isinstance(event, InferenceResult):
                    observer.on_next(event)

            return source.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return operator
