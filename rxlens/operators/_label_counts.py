"""``label_counts``: how many times each label occurs in each window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from rxlens.operators._event_time import WindowAggregate

_T = TypeVar("_T")


def default_label(item: Any) -> str | None:
    """The label an item stands for: ``item.label``, else ``item.text``, else the item if a str.

    Read duck-typed with ``getattr``, so it works on typed Lens results (a Machine State result
    has a ``label``; an Activity Monitor result only a ``text``) and on plain strings in tests.
    Items with neither (heartbeats, lifecycle events, a ``SessionFailed`` marker) give ``None``
    and are left out of every aggregate.
    """
    for name in ("label", "text"):
        value = getattr(item, name, None)
        if value is not None:
            return str(value)
    if isinstance(item, str):
        return item
    return None


def count_labels(
    items: Iterable[_T], key: Callable[[_T], Hashable | None] = default_label
) -> Counter[Hashable]:
    """Count ``key(item)`` over ``items``, skipping items whose key is ``None``.

    The plain function behind :func:`label_counts`, usable on a list without Rx.
    """
    counts: Counter[Hashable] = Counter()
    for item in items:
        label = key(item)
        if label is not None:
            counts[label] += 1
    return counts


def label_counts(
    key: Callable[[Any], Hashable | None] = default_label,
) -> WindowAggregate[Counter[Hashable]]:
    """Map each window (a list of items) to a :class:`collections.Counter` of its labels.

    ``key`` gives an item's label; the default, :func:`default_label`, reads the Machine State
    ``label``, else the result ``text``. Items whose key is ``None`` are not counted, so a
    window with no results gives an empty ``Counter``. Emits one ``Counter`` per window, on the
    window's thread, in window order; completion and errors pass through.

    Marble diagram::

        windows:                -x-----y--|       x=[A, B, A]  y=[]
        label_counts():         -c-----d--|       c=Counter(A=2, B=1)  d=Counter()

    A :class:`~rxlens.operators.Window` record (from event-time or per-session windows) gives a
    :class:`~rxlens.operators.Windowed` record instead, the same value in ``value`` with the
    window's ``session_id``, ``start``, ``end``, ``size`` and ``late``; a plain list gives the
    value itself.

    Use it after :func:`window_results`, e.g.
    ``results.pipe(window_results(seconds=10), label_counts())``.
    """

    def count(window: Sequence[Any]) -> Counter[Hashable]:
        return count_labels(window, key)

    return WindowAggregate(count)


__all__ = ["count_labels", "default_label", "label_counts"]
