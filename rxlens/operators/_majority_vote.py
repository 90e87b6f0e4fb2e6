"""``majority_vote``: the label that wins each window, if one clearly does."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from rxlens.operators._event_time import WindowAggregate
from rxlens.operators._label_counts import count_labels, default_label

_T = TypeVar("_T")


def vote(
    items: Iterable[_T],
    min_share: float = 0.5,
    key: Callable[[_T], Hashable | None] = default_label,
) -> Hashable | None:
    """The most common label among ``items``, or ``None`` when no label clearly wins.

    Returns ``None`` when no item has a label, when two or more labels tie for the top count,
    or when the winner's share (its count over the number of labelled items) is below
    ``min_share``. Items whose key is ``None`` are not votes: they neither win nor dilute.
    """
    counts = count_labels(items, key)
    if not counts:
        return None
    ranked = counts.most_common(2)
    winner, top = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == top:
        return None
    if top / sum(counts.values()) < min_share:
        return None
    return winner


def majority_vote(
    min_share: float = 0.5,
    key: Callable[[Any], Hashable | None] = default_label,
) -> WindowAggregate[Hashable | None]:
    """Map each window to its winning label (see :func:`vote`), or ``None``.

    The winner is the unique most common label whose share of the window's labelled items is
    at least ``min_share`` (``0.5`` by default, so half or more); a tie, a share below
    ``min_share`` or a window without labels gives ``None``. Emitting ``None`` rather than
    skipping keeps one output per window, so outputs line up with windows.

    A :class:`~rxlens.operators.Window` record (from event-time or per-session windows) gives a
    :class:`~rxlens.operators.Windowed` record instead, the same value in ``value`` with the
    window's ``session_id``, ``start``, ``end``, ``size`` and ``late``; a plain list gives the
    value itself.

    Marble diagram::

        windows:              -x---y---z---|     x=[A, A, B]  y=[A, B]  z=[A, B, C]
        majority_vote():      -A---N---N---|     (N is None: y ties, z's A has 1/3 < 0.5)

    Raises:
        ValueError: ``min_share`` is outside ``[0, 1]``.
    """
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be within [0, 1], got {min_share!r}")

    def decide(window: Sequence[Any]) -> Hashable | None:
        return vote(window, min_share, key)

    return WindowAggregate(decide)


__all__ = ["majority_vote", "vote"]
