"""``mean_scores``: the per-class mean of result scores in each window."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Real
from typing import Any

from rxlens.operators._event_time import WindowAggregate


def default_scores(item: Any) -> Mapping[str, Any] | None:
    """An item's class scores: ``item.scores``, or the item itself when it is a mapping."""
    scores = getattr(item, "scores", None)
    if scores is None and isinstance(item, Mapping):
        return item
    return scores if isinstance(scores, Mapping) else None


def mean_of_scores(
    items: Iterable[Any],
    scores: Callable[[Any], Mapping[str, Any] | None] = default_scores,
) -> dict[str, float]:
    """Per class, the mean of the scores that the items report for it.

    A class is averaged over the items that report it, not over every item: the Lens reports
    raw kNN votes, percentages or 0-1 floats depending on the source, so a missing class cannot
    be read as a zero on any one scale. Non-numeric values (and bools) are skipped. Items
    without scores give nothing; no scores at all give ``{}``.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for item in items:
        reported = scores(item)
        if not reported:
            continue
        for name, value in reported.items():
            if isinstance(value, bool) or not isinstance(value, Real):
                continue
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
    return {name: sums[name] / counts[name] for name in sums}


def mean_scores(
    scores: Callable[[Any], Mapping[str, Any] | None] = default_scores,
) -> WindowAggregate[dict[str, float]]:
    """Map each window to ``{class: mean score}`` (see :func:`mean_of_scores`).

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
        return mean_of_scores(window, scores)

    return WindowAggregate(mean)


__all__ = ["default_scores", "mean_of_scores", "mean_scores"]
