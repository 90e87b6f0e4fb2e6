"""``by_session``: split a merged stream into one group per session."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import GroupedObservable, Observable, compose
from reactivex import operators as ops

from rxlens.events import LensEvent, SessionFailed


def by_session() -> Callable[
    [Observable[LensEvent]], Observable[GroupedObservable[str | None, LensEvent]]
]:
    """Group a merged stream by ``session_id``: one :class:`~reactivex.GroupedObservable` each.

    Each group's ``key`` is the session id (``None`` for untagged events). A group ends right
    after its session's :class:`SessionFailed` event (which it delivers), so a failed session
    completes its own group and leaves the others running; the other groups complete when the
    merged stream does. An error of the merged stream itself errors every group. As with
    :func:`reactivex.operators.group_by`, subscribe to a group when it is emitted (e.g. with
    ``flat_map``) to see all of its events.

    Marble diagram (from the :func:`merge_sessions` example)::

        merged:         -a-c-bF--|
        by_session():   -G-H-----|     G (key "s1"): -a---b---|
                                       H (key "s2"): ---c-(F|)

    Typical use, a majority vote per session::

        merged.pipe(by_session(), ops.flat_map(lambda g: g.pipe(
            window_results(count=10), majority_vote(), ops.map(lambda v: (g.key, v)))))
    """

    def session_of(event: LensEvent) -> str | None:
        return event.session_id

    def still_running(event: LensEvent) -> bool:
        return not isinstance(event, SessionFailed)

    def until_failed(
        group: GroupedObservable[str | None, LensEvent],
    ) -> GroupedObservable[str | None, LensEvent]:
        return GroupedObservable(group.key, group.pipe(ops.take_while(still_running, True)))

    return compose(ops.group_by(session_of), ops.map(until_failed))


__all__ = ["by_session"]
