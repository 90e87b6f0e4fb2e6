"""``changes``: emit an item whenever its label differs from the previous label."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from reactivex import Observable, compose
from reactivex import operators as ops

from rxlens.analytics import default_label

_T = TypeVar("_T")


def changes(
    key: Callable[[Any], Hashable | None] = default_label,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Emit each item whose ``key`` differs from the last non-``None`` key (the first one too).

    ``key`` defaults to :func:`~rxlens.analytics.default_label` (the Machine State
    ``label``, else the result ``text``). Items whose key is ``None`` (heartbeats, lifecycle
    events) are neither emitted nor remembered, so they cannot fake a change between two equal
    labels. Errors from ``key`` are sent as ``on_error``. Synchronous: it emits on the thread
    of the item that changed, so it needs no scheduler.

    Marble diagram (h has no label)::

        source:     -A-A-h-A-B-B-A-|
        changes():  -A-------B---A-|
    """
    # Compute each key once: filtering and distinct_until_changed would each call `key` again.
    def keyed(item: _T) -> tuple[Hashable | None, _T]:
        return key(item), item

    def has_key(pair: tuple[Hashable | None, _T]) -> bool:
        return pair[0] is not None

    def first(pair: tuple[Hashable | None, _T]) -> Hashable | None:
        return pair[0]

    def second(pair: tuple[Hashable | None, _T]) -> _T:
        return pair[1]

    return compose(
        ops.map(keyed),
        ops.filter(has_key),
        ops.distinct_until_changed(first),
        ops.map(second),
    )


__all__ = ["changes"]
