"""``until_end``: complete when the server ends the stream (``sse.stream.end``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from rxlens.events import LensEvent, StreamEnd

_E = TypeVar("_E", bound=LensEvent)


def until_end(inclusive: bool = True) -> Callable[[Observable[_E]], Observable[_E]]:
    """Mirror the source until a :class:`~rxlens.events.StreamEnd`, then complete.

    ``sse.stream.end`` is the server's graceful close (the session was destroyed, or the stream
    sat idle for about a minute). With ``inclusive=True`` the end event itself is emitted
    before completing; with ``False`` it is not. The source is disposed at the end, which
    closes the connection. A source that completes or fails first is mirrored as is.

    Put it downstream of a reconnecting operator (``resume``) so that a clean end stops the
    pipeline instead of being retried, and before ``only_results``, which drops the end event.

    Marble diagram (``r`` result, ``e`` stream end)::

        source:                    -r-r-e-r-|
        until_end():               -r-r-(e|)
        until_end(inclusive=False) -r-r-|
            (source subscription:  ^----!)
    """

    def operator(source: Observable[_E]) -> Observable[_E]:
        def subscribe(
            observer: abc.ObserverBase[_E], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            subscription = SingleAssignmentDisposable()
            # No lock: the source's notifications are serial by the Rx contract, and nothing
            # here runs on another thread. `done` drops whatever a source sends after the end.
            done = False

            def on_next(event: _E) -> None:
                nonlocal done
                if done:
                    return
                if not isinstance(event, StreamEnd):
                    observer.on_next(event)
                    return
                done = True
                if inclusive:
                    observer.on_next(event)
                observer.on_completed()
                subscription.dispose()

            def on_error(error: Exception) -> None:
                if not done:
                    observer.on_error(error)

            def on_completed() -> None:
                if not done:
                    observer.on_completed()

            subscription.disposable = source.subscribe(
                on_next, on_error, on_completed, scheduler=scheduler
            )
            return subscription

        return Observable(subscribe)

    return operator
