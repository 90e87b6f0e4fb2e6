"""``label_counts``: how many times each label occurs in each window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from rxlens import analytics
from rxlens.analytics import default_label
from rxlens.operators._event_time import WindowAggregate


def label_counts(
    key: Callable[[Any], Hashable | None] = default_label,
) -> WindowAggregate[Counter[Hashable]]:
    """Map each window (a list of items) to a :class:`collections.Counter` of its labels.

    The operator form of :func:`rxlens.analytics.label_counts`. ``key`` gives an item's label;
    the default, :func:`rxlens.analytics.default_label`, reads the Machine State
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
        return analytics.label_counts(window, key)

    return WindowAggregate(count)


__all__ = ["label_counts"]
