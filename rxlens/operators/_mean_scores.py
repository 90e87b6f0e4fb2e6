"""``mean_scores``: the per-class mean of result scores in each window."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rxlens import analytics
from rxlens.analytics import default_scores
from rxlens.operators._event_time import WindowAggregate


def mean_scores(
    scores: Callable[[Any], Mapping[str, Any] | None] = default_scores,
) -> WindowAggregate[dict[str, float]]:
    """Map each window to ``{class: mean score}`` (see :func:`rxlens.analytics.mean_scores`).

    ``scores`` reads an item's scores; the default takes ``item.scores`` (a Machine State
    result's class scores), or the item itself when it is a mapping. Values keep their scale:
    votes stay votes, percentages stay percentages. Emits one dict per window.

    A :class:`~rxlens.operators.Window` record (from event-time or per-session windows) gives a
    :class:`~rxlens.operators.Windowed` record instead, the same value in ``value`` with the
    window's ``session_id``, ``start``, ``end``, ``size`` and ``late``; a plain list gives the
    value itself.

    Marble diagram::

        windows:          -x------y--|     x=[{A: 3, B: 2}, {A: 5}]  y=[]
        mean_scores():    -m------e--|     m={A: 4.0, B: 2.0}  e={}
    """

    def mean(window: Sequence[Any]) -> dict[str, float]:
        return analytics.mean_scores(window, scores)

    return WindowAggregate(mean)


__all__ = ["mean_scores"]
