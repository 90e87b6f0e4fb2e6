"""``window_results``: gather a stream into lists, by count, by time, or whichever comes first."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable, abc
from reactivex import operators as ops

_T = TypeVar("_T")


def window_results(
    count: int | None = None,
    seconds: float | None = None,
    slide: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[_T]], Observable[list[_T]]]:
    """Gather items into lists: tumbling windows, or sliding ones when ``slide`` is given.

    Choose one of three shapes:

    - ``count=n``: a list every ``n`` items. With ``slide=k`` (an int), a new window opens every
      ``k`` items, so consecutive windows overlap by ``n - k`` items.
    - ``seconds=s``: a list every ``s`` seconds of scheduler time, *including empty lists* for
      spans with no items (a quiet span is an answer too: "nothing happened"). With
      ``slide=k`` (seconds), a window of length ``s`` opens every ``k`` seconds.
    - ``count=n, seconds=s``: tumbling only; a window closes at ``n`` items or ``s`` seconds
      after it opened, whichever comes first.

    Time windows start at subscription and cover ``(start, start + seconds]``: an item due at
    the very instant a window closes is delivered before the close, so it joins that window
    (in real time such ties do not occur; in virtual time this makes them deterministic).
    On completion every open window is emitted as it
    stands (count windows only when non-empty); on error the open windows are dropped and the
    error is forwarded. Tumbling windows together hold every item exactly once, in order.

    Built on RxPY's ``buffer_with_count``, ``buffer_with_time`` and
    ``buffer_with_time_or_count`` (reactivex >= 6.1, which serialise the timer and the source
    under one lock, so emissions never overlap). ``scheduler`` times the windows; it defaults
    to the subscription's scheduler, then to :class:`reactivex.scheduler.TimeoutScheduler`.

    Marble diagrams (each character is one second)::

        source:                     -a-b-c-d-e-|
        window_results(count=2):    ---[ab]-[cd]-[e]|

        source:                     -a-b---c----d-|
        window_results(seconds=3):  ---x--y--z--w-(v|)
            x=[a, b]  y=[]  z=[c]  w=[d]  v=[]     (windows close at 3, 6, 9, 12, then 13)

        source:                     -a-b-c-d-|
        window_results(count=3, slide=1):
                                    -----x-y-(zw|)
            x=[a, b, c]  y=[b, c, d]  z=[c, d]  w=[d]

        source:                     -abc---d-----|
        window_results(count=2, seconds=5):
                                    --x----y----z(v|)
            x=[a, b] (count)  y=[c, d] (time, 5 s after x)  z=[] (time)  v=[] (completion)

    Raises:
        ValueError: no shape was chosen, a size is not positive, or ``slide`` is given with
            both ``count`` and ``seconds``, is a non-integer with ``count``, or exceeds the
            window (which would skip items).
    """
    if count is None and seconds is None:
        raise ValueError("window_results needs count=, seconds=, or both")
    if count is not None and (isinstance(count, bool) or count < 1):
        raise ValueError(f"count must be a positive int, got {count!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    if slide is not None:
        if count is not None and seconds is not None:
            raise ValueError("slide= works with count= or with seconds=, not with both")
        if not slide > 0:
            raise ValueError(f"slide must be positive, got {slide!r}")
        if count is not None and (isinstance(slide, bool) or int(slide) != slide):
            raise ValueError(f"with count=, slide counts items and must be an int, got {slide!r}")
        size = count if count is not None else seconds
        assert size is not None
        if slide > size:
            # Windows further apart than they are long would silently skip the items between them.
            raise ValueError(f"slide ({slide!r}) must not exceed the window ({size!r})")

    if seconds is None:
        assert count is not None
        skip = None if slide is None else int(slide)
        return ops.buffer_with_count(count, skip)
    if count is None:
        return ops.buffer_with_time(seconds, slide, scheduler=scheduler)
    return ops.buffer_with_time_or_count(seconds, count, scheduler=scheduler)


__all__ = ["window_results"]
