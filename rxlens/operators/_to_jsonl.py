"""``to_jsonl``: record a stream to a JSONL file as it passes (replay it with ``rxlens.replay``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxlens._record_format import StrPath, encode_record, open_for_writing
from rxlens.errors import RecordingError, RecordingIOError
from rxlens.events import LensEvent


def to_jsonl(
    path: StrPath, *, append: bool = False
) -> Callable[[Observable[LensEvent]], Observable[LensEvent]]:
    """An operator that records every event to a JSONL file and passes it on unchanged.

    Each subscription opens ``path`` (emptied first unless ``append=True``; a new file is
    created readable by its owner only, mode 0600), writes one record per event in the format
    of :mod:`rxlens.recording`, flushes after every line *before* handing the event on (so an
    event seen downstream is already in the file), and closes the file on completion, error or
    disposal. Flushing hands each line to the operating system; it does not ``fsync``.

    A write failure, or an item that is not a :class:`~rxlens.events.LensEvent`, ends the
    stream with :class:`~rxlens.recording.RecordingError` (the upstream is disposed); a file
    that cannot be opened errors the subscription at once. Writes are serialised by a lock.

    Marble diagram::

        source:           -a-b-|
        to_jsonl(path):   -a-b-|      (a and b written to path before being emitted)

    Record a merged stream and replay it later::

        merged.pipe(to_jsonl("run.jsonl"), window_results(count=10), majority_vote())
        replay("run.jsonl").pipe(window_results(count=10), majority_vote())
    """

    def operator(source: Observable[LensEvent]) -> Observable[LensEvent]:
        def subscribe(
            observer: abc.ObserverBase[LensEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            try:
                handle = open_for_writing(path, append=append)
            except RecordingError as error:
                observer.on_error(error)
                return Disposable()
            lock = threading.Lock()
            stopped = False

            def close() -> bool:
                # True for the caller that closed the file (and so may end the stream).
                nonlocal stopped
                with lock:
                    if stopped:
                        return False
                    stopped = True
                    handle.close()
                    return True

            def on_next(event: LensEvent) -> None:
                with lock:
                    if stopped:
                        return
                    try:
                        handle.write(encode_record(event) + "\n")
                        handle.flush()
                    except RecordingError as error:
                        failure: RecordingError | None = error
                    except (OSError, ValueError) as error:
                        failure = RecordingIOError(f"cannot write to the recording: {error}")
                    else:
                        failure = None
                if failure is None:
                    observer.on_next(event)
                    return
                upstream.dispose()
                if close():
                    observer.on_error(failure)

            def on_error(error: Exception) -> None:
                if close():
                    observer.on_error(error)

            def on_completed() -> None:
                if close():
                    observer.on_completed()

            def dispose() -> None:
                close()

            upstream = CompositeDisposable()
            upstream.add(source.subscribe(on_next, on_error, on_completed, scheduler=scheduler))
            return CompositeDisposable(upstream, Disposable(dispose))

        return Observable(subscribe)

    return operator


__all__ = ["to_jsonl"]
