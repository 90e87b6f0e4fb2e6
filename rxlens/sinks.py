"""Sinks: get a stream's events into a list, a pandas DataFrame or a JSONL recording.

- :func:`collect` blocks until enough has arrived and returns a list: for scripts, notebooks
  and tests. It always has a time bound.
- :func:`to_dataframe` collects (or takes a list) and builds a DataFrame, one row per event.
  pandas is an optional extra: ``pip install 'rxlens[pandas]'`` (from a clone:
  ``pip install -e '.[pandas]'``; the error names the one that fits, see :func:`install_hint`).
- :func:`to_jsonl` is an *operator* (it lives in :mod:`rxlens.operators` and is re-exported
  here): it writes each event to a recording as it passes and hands the event on unchanged, so
  recording composes with any pipeline. Read a recording back with
  :func:`rxlens.recording.replay` (format: :mod:`rxlens.recording`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlparse
from urllib.request import url2pathname

from reactivex import Observable, abc
from reactivex import operators as ops

from rxlens._deprecation import module_getattr
from rxlens.errors import CollectTimeout, MissingDependency
from rxlens.operators import to_jsonl

if TYPE_CHECKING:
    import pandas

_T = TypeVar("_T")

#: How long :func:`collect` waits when neither ``seconds`` nor ``timeout`` is given (seconds).
#: (Formerly ``DEFAULT_TIMEOUT``, a name that clashed with the ``(connect, read)`` timeout of
#: every request, which means something else.)
COLLECT_TIMEOUT = 60.0


# --- collect ------------------------------------------------------------------------------------


def collect(
    observable: Observable[_T],
    n: int | None = None,
    seconds: float | None = None,
    timeout: float | None = None,
    *,
    scheduler: abc.SchedulerBase | None = None,
) -> list[_T]:
    """Subscribe, block until an end condition, dispose, and return the items that arrived.

    It returns when the first of these happens:

    - ``n`` items have arrived (the source is cut with ``take(n)``, so even a source that
      emits synchronously and forever stops);
    - ``seconds`` have passed (a normal end: "what arrived in 10 s");
    - the stream completes;
    - the stream errors: the error is raised;
    - ``timeout`` passes first: :class:`CollectTimeout` is raised, carrying the items in
      ``.items``. ``timeout`` defaults to ``seconds`` when given (so ``seconds`` alone never
      raises) and to :data:`COLLECT_TIMEOUT` (60 s) otherwise, so ``collect`` never blocks
      without a bound.

    The subscription is disposed before returning, whatever the outcome (also on
    ``KeyboardInterrupt``). It waits on a :class:`threading.Event`, so it works from any
    thread; it must not be called on the thread that the source needs to emit (for example
    inside a scheduler's own callback), which no blocking call can do. ``scheduler`` is passed
    to ``subscribe``. Time is wall-clock time.

    Raises:
        ValueError: ``n`` is negative, or ``seconds``/``timeout`` not positive.
        CollectTimeout: ``timeout`` passed first.
    """
    if n is not None and (isinstance(n, bool) or n < 0):
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    if n == 0:
        return []
    bound = timeout if timeout is not None else seconds if seconds is not None else COLLECT_TIMEOUT

    lock = threading.Lock()
    done = threading.Event()
    items: list[_T] = []
    errors: list[Exception] = []
    finished = False

    def on_next(item: _T) -> None:
        with lock:
            if not finished:
                items.append(item)

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    source = observable.pipe(ops.take(n)) if n is not None else observable
    started = time.monotonic()
    subscription = source.subscribe(on_next, on_error, done.set, scheduler=scheduler)
    try:
        end = started + min(bound, seconds if seconds is not None else math.inf)
        done.wait(max(0.0, end - time.monotonic()))
    finally:
        subscription.dispose()
        with lock:
            finished = True
    result = list(items)
    if errors:
        raise errors[0]
    if done.is_set() or (seconds is not None and seconds <= bound):
        return result
    raise CollectTimeout(bound, result, n)


# --- to_dataframe -------------------------------------------------------------------------------

#: The columns of :func:`to_dataframe`, in order.
COLUMNS = (
    "received_at",
    "session_id",
    "id",
    "type",
    "text",
    "scores",
    "sensor_timestamp",
    "query_timestamp",
    "read_index",
    "event",
)


def to_dataframe(
    source: Observable[Any] | Iterable[Any],
    n: int | None = None,
    seconds: float | None = None,
    timeout: float | None = None,
    *,
    scheduler: abc.SchedulerBase | None = None,
) -> pandas.DataFrame:
    """A pandas DataFrame with one row per event, from an Observable or an iterable of events.

    An Observable is first gathered with :func:`collect` (same ``n``, ``seconds``, ``timeout``
    and errors); an iterable (a list from :func:`collect`, :func:`rxlens.recording.read_recording`)
    is used as it is. Columns:

    ``received_at``
        arrival time, ``datetime64[ns, UTC]``;
    ``session_id``, ``id``, ``type``
        the event's session, SSE id and Lens type;
    ``text``
        the result text; for a Machine State result this is its label (``label == text``);
    ``scores``
        the class scores dict, or ``None``;
    ``sensor_timestamp``
        the sensor position (a video's ``"HH:MM:SS"``), or ``None``;
    ``query_timestamp``
        the lens's time of the query, UTC datetimes like ``received_at`` (Machine State
        results carry it: their sensor time); missing when the event has none;
    ``read_index``
        first row of the classified window (nullable ``Int64``);
    ``event``
        the event object itself, so nothing is lost.

    Values an event does not have (a heartbeat has no ``text``) are missing. Plain values
    work too (every column but ``event`` is then missing).

    Raises:
        MissingDependency: pandas is not installed; the message says how to add it to this
            installation (see :func:`install_hint`).
    """
    pd = _pandas()
    if isinstance(source, Observable):
        events: list[Any] = collect(source, n, seconds, timeout, scheduler=scheduler)
    else:
        events = list(source)
    rows = {name: [_column(event, name) for event in events] for name in COLUMNS}
    frame: pandas.DataFrame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["received_at"] = pd.to_datetime(
        pd.Series(rows["received_at"], dtype="float64"), unit="s", utc=True
    )
    frame["query_timestamp"] = pd.to_datetime(
        pd.Series(
            [math.nan if t is None else t for t in rows["query_timestamp"]], dtype="float64"
        ),
        unit="s",
        utc=True,
    )
    frame["read_index"] = pd.array(rows["read_index"], dtype="Int64")
    return frame


def _column(event: Any, name: str) -> Any:
    if name == "event":
        return event
    value = getattr(event, name, None)
    if name == "received_at" and value is None:
        return math.nan
    return value


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise MissingDependency(
            f"to_dataframe needs pandas, an optional extra: {install_hint('pandas')}"
        ) from exc
    return pandas


class _Distribution(Protocol):
    def read_text(self, filename: str) -> str | None: ...


def install_hint(extra: str, dist: _Distribution | None = None) -> str:
    """The command that adds an optional extra to rxlens *as it was installed*.

    ``pip install 'rxlens[pandas]'`` only works for a copy from a package index; a clone
    installed with ``pip install -e .`` needs ``pip install -e '.[pandas]'`` in that clone.
    The distribution's ``direct_url.json`` (PEP 610, written by pip for anything not taken
    from an index) tells which: an editable or plain local directory, a VCS or archive URL
    (then the extra's own packages are named), or nothing (an index).
    """
    if dist is None:
        try:
            from importlib.metadata import PackageNotFoundError, distribution
        except ImportError:  # pragma: no cover - the standard library always has it
            return f"pip install 'rxlens[{extra}]'"
        try:
            dist = distribution("rxlens")
        except PackageNotFoundError:  # run from a source tree that was never installed
            return f"pip install '.[{extra}]' in the rxlens source directory"
    try:
        text = dist.read_text("direct_url.json")
        direct = json.loads(text) if text else None
    except (OSError, ValueError):
        direct = None
    if not isinstance(direct, dict):
        return f"pip install 'rxlens[{extra}]'"
    url = str(direct.get("url", ""))
    dir_info = direct.get("dir_info")
    if isinstance(dir_info, dict) and url.startswith("file:"):
        where = url2pathname(urlparse(url).path)
        editable = "-e " if dir_info.get("editable") else ""
        return f"pip install {editable}'.[{extra}]' (in {where})"
    return f"pip install {extra}"


#: The old name stays one release, with a warning (once).
__getattr__ = module_getattr(
    __name__, {"DEFAULT_TIMEOUT": ("rxlens.sinks.COLLECT_TIMEOUT", lambda: COLLECT_TIMEOUT)}
)


__all__ = [
    "COLLECT_TIMEOUT",
    "COLUMNS",
    "CollectTimeout",
    "MissingDependency",
    "collect",
    "install_hint",
    "to_dataframe",
    "to_jsonl",
]
