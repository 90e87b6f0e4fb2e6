"""Lens streams in Jupyter: subscriptions that never block a cell and print into their own cell.

rxlens streams emit on reader and timer threads. In a notebook that raises two problems:

- a blocking call (``collect``, a long ``subscribe`` loop) freezes the cell and the kernel;
- output from a thread goes to whichever cell ran *last*, not to the cell that started the
  stream. Since ipykernel 7 the cell an output belongs to (its parent message) is a context
  variable, and threads the library starts do not inherit it, so they must set it themselves.

This module runs every callback in a copy of the context of the cell that subscribed, so
prints, displays and display updates land in that cell, and keeps a registry of what it
started, so :func:`stop_all` ends everything at once::

    from rxlens import notebook

    sub = notebook.subscribe(client.events(sid).pipe(only_results()))   # prints each result
    view = notebook.live(results.pipe(window_results(seconds=10), label_counts()))
    notebook.stop_all()

Outside a kernel everything still works: prints go to stdout and :func:`live` falls back to
printing each update.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from reactivex import Observable
from reactivex.disposable import CompositeDisposable, SerialDisposable
from reactivex.scheduler import NewThreadScheduler

from rxlens.events import LensEvent

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

#: Every subscription started here and not yet ended, for :func:`stop_all`.
_ACTIVE: set[Subscription[Any]] = set()
_ACTIVE_LOCK = threading.Lock()


def in_cell(function: _F) -> _F:
    """``function``, made to run in the context of the cell that calls ``in_cell`` now.

    Each call runs in a fresh copy of that context (a context cannot be entered by two
    threads at once, and a reader thread and a timer thread may well call together), so the
    ipykernel parent message, and with it the cell outputs go to, is the calling cell's.
    """
    captured = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> Any:
        return captured.copy().run(function, *args, **kwargs)

    return run  # type: ignore[return-value]


class Subscription(Generic[_T]):
    """A stream subscribed from a notebook: stop it, wait for it, see how it ended.

    ``count`` is the number of items seen, ``error`` the error it ended with (or ``None``),
    ``done`` a :class:`threading.Event` set when it completed, failed or was stopped.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.stopped = False
        self._disposable = SerialDisposable()

    def __repr__(self) -> str:
        state = (
            "stopped"
            if self.stopped
            else "failed"
            if self.error is not None
            else "ended"
            if self.done.is_set()
            else "running"
        )
        return f"<rxlens.notebook.Subscription {self.name!r} {state}, {self.count} items>"

    def stop(self) -> None:
        """Dispose the subscription (idempotent)."""
        if not self.done.is_set():
            self.stopped = True
        self._disposable.dispose()
        self._finish()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the stream ended (or ``timeout`` seconds); ``True`` if it ended.

        Waiting blocks the cell, on purpose; everything else here does not.
        """
        return self.done.wait(timeout)

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def _finish(self) -> None:
        self.done.set()
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)


def subscribe(
    source: Observable[_T],
    on_next: Callable[[_T], Any] | None = None,
    on_error: Callable[[Exception], Any] | None = None,
    on_completed: Callable[[], Any] | None = None,
    *,
    name: str | None = None,
) -> Subscription[_T]:
    """Subscribe without blocking the cell; callbacks print and display into this cell.

    The subscription itself is made on a new thread, and with a
    :class:`~reactivex.scheduler.NewThreadScheduler` as its scheduler, so even a source that
    emits synchronously (``rxlens.replay(path)``, ``reactivex.of(...)``) returns at once and
    stops when stopped. Time-based operators without a scheduler of their own time on it. By
    default each item is printed (a Lens event as one readable line) and an error is
    printed as one line. Returns a :class:`Subscription`; :func:`stop_all` stops it too.
    """
    from rxlens._format import format_line

    def show(item: Any) -> None:
        print(format_line(item) if isinstance(item, LensEvent) else item)

    def report(error: Exception) -> None:
        print(f"stream failed: {type(error).__name__}: {error}")

    handle: Subscription[_T] = Subscription(name or _describe(source))
    user_next = in_cell(on_next or show)
    user_error = in_cell(on_error or report)
    user_done = in_cell(on_completed) if on_completed is not None else None

    def next_(item: _T) -> None:
        handle.count += 1
        user_next(item)

    def error_(error: Exception) -> None:
        handle.error = error
        try:
            user_error(error)
        finally:
            handle._finish()

    def completed() -> None:
        try:
            if user_done is not None:
                user_done()
        finally:
            handle._finish()

    with _ACTIVE_LOCK:
        _ACTIVE.add(handle)
    # The subscribe call runs on a new thread, so the cell goes on at once; and the source is
    # given a NewThreadScheduler, so one that emits synchronously on the subscription's
    # scheduler (reactivex.from_iterable, rxlens.replay) runs on a thread of its own, returns
    # its disposable, and stops when stopped (run inline, an endless one would keep spinning).
    threads = NewThreadScheduler()
    inner = SerialDisposable()

    def start(_: Any, __: Any = None) -> None:
        # A SerialDisposable already disposed disposes what it is given: a stop that came
        # first wins.
        inner.disposable = source.subscribe(next_, error_, completed, scheduler=threads)

    handle._disposable.disposable = CompositeDisposable(threads.schedule(start), inner)
    return handle


def live(
    source: Observable[_T],
    render: Callable[[Sequence[_T]], Any] | None = None,
    *,
    keep: int = 10,
    interval: float = 0.25,
    title: str | None = None,
    display: Callable[..., Any] | None = None,
) -> Subscription[_T]:
    """Show a stream in one output area that updates in place, without blocking the cell.

    ``render`` turns the last ``keep`` items into something IPython can display (a string,
    an ``HTML`` object, a DataFrame, ...); the default shows them as lines of text under a
    header with the item count and state. Updates are throttled to one per ``interval``
    seconds, with a last one when the stream ends. It uses an IPython display handle
    (``display(..., display_id=True)``); ``display`` replaces IPython's ``display``
    function (for tests, or another front end). Returns the :class:`Subscription`.

    Updates go to the view's output wherever it is, even after its cell has finished; a
    notebook run headless (nbclient, CI) records the view's state as of the last cell executed,
    so call ``view.wait(timeout)`` in a later cell to record its final state (the last update
    is sent before ``wait`` returns).
    """
    shown: deque[_T] = deque(maxlen=max(1, keep))
    lock = threading.Lock()
    heading = title or _describe(source)
    show = display if display is not None else _ipython_display()
    handle_box: list[Subscription[_T]] = []
    # How the stream ended, set before the last update (which runs before the handle is done).
    ending: list[str] = []

    def view() -> Any:
        sub = handle_box[0] if handle_box else None
        with lock:
            items = list(shown)
        if render is not None:
            return render(items)
        count = sub.count if sub else 0
        state = ending[0] if ending else "running"
        if sub is not None and sub.error is not None:
            state = f"failed: {sub.error}"
        elif sub is not None and sub.stopped:
            state = "stopped"
        elif sub is not None and sub.done.is_set():
            state = "ended"
        lines = [f"{heading}: {count} items, {state}"]
        lines += [_line(item) for item in items]
        return _Text("\n".join(lines))

    display_handle = show(view(), display_id=True)

    def refresh() -> None:
        # A display update finds its output by display id, in whichever cell it is. It is sent
        # from an empty context, so ipykernel stamps it with the cell executing *now* (its
        # fallback parent): front ends and nbclient drop messages of a cell that has finished,
        # which froze the view at its first state when the stream outlived its cell (always,
        # when a notebook is run headless).
        contextvars.Context().run(_update, display_handle, view())

    throttle = _Throttle(interval, refresh)

    def on_next(item: _T) -> None:
        with lock:
            shown.append(item)
        throttle.poke()

    def on_error(error: Exception) -> None:
        ending.append(f"failed: {error}")
        throttle.flush()

    def on_completed() -> None:
        ending.append("ended")
        throttle.flush()

    handle = subscribe(source, on_next, on_error, on_completed, name=heading)
    handle_box.append(handle)
    original_stop = handle.stop

    def stop() -> None:
        original_stop()
        throttle.flush()

    handle.stop = stop  # type: ignore[method-assign]
    return handle


def stop_all() -> int:
    """Stop every subscription started by this module that is still running; how many."""
    with _ACTIVE_LOCK:
        running = list(_ACTIVE)
    for sub in running:
        sub.stop()
    return len(running)


def active() -> list[Subscription[Any]]:
    """The subscriptions started by this module that are still running."""
    with _ACTIVE_LOCK:
        return list(_ACTIVE)


# --- internals ----------------------------------------------------------------------------------


class _Text:
    """Plain text shown as such by IPython (no quotes, unlike a ``str`` result)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text)


class _Throttle:
    """Calls ``action`` at most once per ``interval`` seconds, and once after the last poke."""

    def __init__(self, interval: float, action: Callable[[], Any]) -> None:
        self.interval = interval
        self.action = action
        self._lock = threading.Lock()
        self._last = 0.0
        self._timer: threading.Timer | None = None

    def poke(self) -> None:
        with self._lock:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._fire)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._last = time.monotonic()
        self.action()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self.action()

    def flush(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._last = time.monotonic()
        self.action()


def _update(handle: Any, content: Any) -> None:
    if handle is not None and hasattr(handle, "update"):
        handle.update(content)
    else:
        print(content)


def _ipython_display() -> Callable[..., Any]:
    try:
        from IPython.display import display as ipython_display
    except ImportError:  # no IPython: print each state instead of updating in place

        def printing(content: Any, **_: Any) -> None:
            print(content)

        return printing
    shown: Callable[..., Any] = ipython_display
    return shown


def _line(item: Any) -> str:
    if isinstance(item, LensEvent):
        from rxlens._format import format_line

        return format_line(item, with_session=item.session_id is not None)
    return str(item)


def _describe(source: Observable[Any]) -> str:
    return type(source).__name__


__all__ = ["Subscription", "active", "in_cell", "live", "stop_all", "subscribe"]
