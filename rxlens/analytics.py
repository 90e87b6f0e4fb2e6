"""Plain functions over a list of results: the logic behind the aggregate operators.

Each aggregate exists twice under one name: here as a function of a list (use it on a window you
already hold, a DataFrame's rows, or in a test), and in :mod:`rxlens.operators` as the operator
that applies it to each window of a stream. ``analytics.majority_vote(items)`` and
``operators.majority_vote()`` always agree, because the operator calls the function.

Items are read duck-typed (``getattr``), so these work on typed Lens results and on plain
strings or mappings alike; nothing here imports the event types.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from numbers import Real
from typing import Any, TypeVar

_T = TypeVar("_T")


def default_label(item: Any) -> str | None:
    """The label an item stands for: ``item.label``, else ``item.text``, else the item if a str.

    Read duck-typed with ``getattr``, so it works on typed Lens results (a Machine State result
    has a ``label``; an Activity Monitor result only a ``text``) and on plain strings in tests.
    Items with neither (heartbeats, lifecycle events, a ``SessionFailed`` marker) give ``None``
    and are left out of every aggregate.

    >>> default_label("idle"), default_label(42)
    ('idle', None)
    """
    for name in ("label", "text"):
        value = getattr(item, name, None)
        if value is not None:
            return str(value)
    if isinstance(item, str):
        return item
    return None


def default_scores(item: Any) -> Mapping[str, Any] | None:
    """An item's class scores: ``item.scores``, or the item itself when it is a mapping."""
    scores = getattr(item, "scores", None)
    if scores is None and isinstance(item, Mapping):
        return item
    return scores if isinstance(scores, Mapping) else None


def label_counts(
    items: Iterable[_T], key: Callable[[_T], Hashable | None] = default_label
) -> Counter[Hashable]:
    """Count ``key(item)`` over ``items``, skipping items whose key is ``None``.

    >>> label_counts(["A", "B", "A", 7])
    Counter({'A': 2, 'B': 1})
    """
    counts: Counter[Hashable] = Counter()
    for item in items:
        label = key(item)
        if label is not None:
            counts[label] += 1
    return counts


def majority_vote(
    items: Iterable[_T],
    min_share: float = 0.5,
    key: Callable[[_T], Hashable | None] = default_label,
) -> Hashable | None:
    """The most common label among ``items``, or ``None`` when no label clearly wins.

    Returns ``None`` when no item has a label, when two or more labels tie for the top count,
    or when the winner's share (its count over the number of labelled items) is below
    ``min_share`` (``0.5`` by default: the winner needs half of the votes or more; lower it to
    take a plurality among many labels). Items whose key is ``None`` are not votes: they
    neither win nor dilute.

    >>> majority_vote(["A", "A", "B"]), majority_vote(["A", "B"]), majority_vote(["A", "B", "C"])
    ('A', None, None)
    >>> majority_vote(["A", "A", "B", "C", "D"], min_share=0.3)
    'A'

    Raises:
        ValueError: ``min_share`` is outside ``[0, 1]``.
    """
    check_share(min_share)
    counts = label_counts(items, key)
    if not counts:
        return None
    ranked = counts.most_common(2)
    winner, top = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == top:
        return None
    if top / sum(counts.values()) < min_share:
        return None
    return winner


def mean_scores(
    items: Iterable[Any],
    scores: Callable[[Any], Mapping[str, Any] | None] = default_scores,
) -> dict[str, float]:
    """Per class, the mean of the scores that the items report for it.

    A class is averaged over the items that report it, not over every item: the Lens reports
    raw kNN votes, percentages or 0-1 floats depending on the source, so a missing class cannot
    be read as a zero on any one scale. Non-numeric values (and bools) are skipped. Items
    without scores give nothing; no scores at all give ``{}``.

    >>> mean_scores([{"A": 3, "B": 2}, {"A": 5}])
    {'A': 4.0, 'B': 2.0}
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


def check_share(min_share: float) -> None:
    """Raise ``ValueError`` unless ``0 <= min_share <= 1``."""
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be within [0, 1], got {min_share!r}")


__all__ = ["default_label", "default_scores", "label_counts", "majority_vote", "mean_scores"]
