"""``majority_vote``: the label that wins each window, if one clearly does."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from rxlens import analytics
from rxlens.analytics import default_label
from rxlens.operators._event_time import WindowAggregate


def majority_vote(
    min_share: float = 0.5,
    key: Callable[[Any], Hashable | None] = default_label,
) -> WindowAggregate[Hashable | None]:
    """Map each window to its winning label, or ``None``: :func:`rxlens.analytics.majority_vote`.

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
    analytics.check_share(min_share)

    def decide(window: Sequence[Any]) -> Hashable | None:
        return analytics.majority_vote(window, min_share, key)

    return WindowAggregate(decide)


__all__ = ["majority_vote"]
