"""``changes``: emit an item whenever its label differs from the previous label."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from reactivex import GroupedObservable, Observable, compose
from reactivex import operators as ops

from rxlens.analytics import default_label
from rxlens.operators._event_time import TimeSpec, checked_time, time_of

_T = TypeVar("_T")


@dataclass(frozen=True)
class Change(Generic[_T]):
    """A label change in event time: ``label`` replaced ``previous`` (``None`` for the first).

    ``at`` is the event time of ``item``, the item that carried the new label (``None`` when it
    had none); ``session_id`` is the item's session, if any. ``since`` is the event time of the
    previous change (how long ``previous`` lasted is ``at - since``).
    """

    label: Hashable
    previous: Hashable | None
    at: float | None
    since: float | None
    item: _T
    session_id: str | None = None


@overload
def changes(
    key: Callable[[Any], Hashable | None] = default_label,
    *,
    time: None = None,
    per_session: bool = False,
) -> Callable[[Observable[_T]], Observable[_T]]: ...


@overload
def changes(
    key: Callable[[Any], Hashable | None] = default_label,
    *,
    time: TimeSpec,
    per_session: bool = False,
) -> Callable[[Observable[_T]], Observable[Change[_T]]]: ...


def changes(
    key: Callable[[Any], Hashable | None] = default_label,
    *,
    time: TimeSpec | None = None,
    per_session: bool = False,
) -> Callable[[Observable[_T]], Observable[Any]]:
    """Emit each item whose ``key`` differs from the last non-``None`` key (the first one too).

    ``key`` defaults to :func:`~rxlens.analytics.default_label` (the Machine State
    ``label``, else the result ``text``). Items whose key is ``None`` (heartbeats, lifecycle
    events) are neither emitted nor remembered, so they cannot fake a change between two equal
    labels. Errors from ``key`` are sent as ``on_error``. Synchronous: it emits on the thread
    of the item that changed, so it needs no scheduler.

    With ``time=`` (``"received"``, ``"sensor"`` or a callable, as in
    :func:`~rxlens.operators.window_results`) each change comes out as a :class:`Change` record
    with its event time (``at``) and the time of the change before it (``since``): the stretches
    of a label, on the events' own clock, the same live and on any replay of a recording.
    Errors from ``time`` are sent as ``on_error``.

    ``per_session=True`` tracks the label of each ``session_id`` on its own, so two sessions of
    a merged stream do not look like changes of one.

    Marble diagram (h has no label)::

        source:     -A-A-h-A-B-B-A-|
        changes():  -A-------B---A-|

    Raises:
        ValueError: ``time`` is not ``"received"``, ``"sensor"`` or callable.
    """
    if per_session:
        single: Callable[[Observable[Any]], Observable[Any]] = (
            changes(key) if time is None else changes(key, time=time)
        )

        def per_group(group: GroupedObservable[str | None, Any]) -> Observable[Any]:
            return group.pipe(single)

        return compose(ops.group_by(_session_of), ops.flat_map(per_group))

    # Compute each key once: filtering and distinct_until_changed would each call `key` again.
    def keyed(item: _T) -> tuple[Hashable | None, _T]:
        return key(item), item

    def has_key(pair: tuple[Hashable | None, _T]) -> bool:
        return pair[0] is not None

    def first(pair: tuple[Hashable | None, _T]) -> Hashable | None:
        return pair[0]

    def second(pair: tuple[Hashable | None, _T]) -> _T:
        return pair[1]

    plain = compose(
        ops.map(keyed),
        ops.filter(has_key),
        ops.distinct_until_changed(first),
    )
    if time is None:
        return compose(plain, ops.map(second))

    reader = time_of(time)

    def record(
        last: Change[_T] | None, pair: tuple[Hashable | None, _T]
    ) -> Change[_T]:
        label, item = pair
        assert label is not None
        at = checked_time(reader, item)
        return Change(
            label=label,
            previous=None if last is None else last.label,
            at=at,
            since=None if last is None else last.at,
            item=item,
            session_id=_session_of(item),
        )

    return compose(plain, ops.scan(record, None))


def _session_of(item: Any) -> str | None:
    value = getattr(item, "session_id", None)
    return value if isinstance(value, str) else None


__all__ = ["Change", "changes"]
