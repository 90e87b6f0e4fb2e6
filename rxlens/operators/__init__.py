"""Operators for Lens streams. Each lives in its own module; this is their documented face.

Connection and Lens events:

- :func:`resume`: reconnect after retryable errors and drop replayed events.
- :func:`heartbeat_timeout`: fail a connection silent for too long (put it before ``resume``).
- :func:`typed`: decode SSE events into typed Lens events.
- :func:`until_end`: complete on ``sse.stream.end``.
- :func:`hand_off`: deliver on a thread of its own, through a bounded queue.
- :func:`only_results`: keep ``inference.result`` events.

Analytics:

- :func:`window_results`: tumbling or sliding windows, by count, by time or both; in event
  time (``time=``) and per session (``per_session=True``) as :class:`Window` records.
- :func:`label_counts`, :func:`majority_vote`, :func:`mean_scores`: aggregates per window
  (:mod:`rxlens.analytics` has the same functions, by the same names, for plain lists); on
  :class:`Window` records they emit :class:`Windowed` records that keep the window's context.
- :func:`rate`: results per second.
- :func:`rising_edge`, :func:`changes`: alerts and label changes.
- :func:`merge_sessions`, :func:`by_session`: many sessions in one stream, and back.
- :func:`to_jsonl`: record a stream as it passes (replay it with :func:`rxlens.replay`).
"""

from __future__ import annotations

from rxlens import analytics
from rxlens._deprecation import module_getattr
from rxlens.errors import RecordedSessionError
from rxlens.events import SessionFailed
from rxlens.operators._by_session import by_session
from rxlens.operators._changes import Change, changes
from rxlens.operators._event_time import Window, Windowed, sensor_time
from rxlens.operators._hand_off import hand_off
from rxlens.operators._heartbeat_timeout import heartbeat_timeout, typed_heartbeat_timeout
from rxlens.operators._label_counts import label_counts
from rxlens.operators._majority_vote import majority_vote
from rxlens.operators._mean_scores import mean_scores
from rxlens.operators._merge_sessions import merge_sessions
from rxlens.operators._only_results import only_results
from rxlens.operators._preset import Narrowable as Narrowable
from rxlens.operators._preset import events_preset as events_preset
from rxlens.operators._rate import rate
from rxlens.operators._rising_edge import rising_edge
from rxlens.operators._to_jsonl import to_jsonl
from rxlens.operators._typed import typed
from rxlens.operators._until_end import until_end
from rxlens.operators._window_results import window_results
from rxlens.sse import resume

__all__ = [
    "Change",
    "RecordedSessionError",
    "SessionFailed",
    "Window",
    "Windowed",
    "by_session",
    "changes",
    "hand_off",
    "heartbeat_timeout",
    "label_counts",
    "majority_vote",
    "mean_scores",
    "merge_sessions",
    "only_results",
    "rate",
    "resume",
    "rising_edge",
    "sensor_time",
    "to_jsonl",
    "typed",
    "typed_heartbeat_timeout",
    "until_end",
    "window_results",
]


#: Names of the previous release, still served (with a DeprecationWarning, once) for one more.
_DEPRECATED = {
    "count_labels": ("rxlens.analytics.label_counts", lambda: analytics.label_counts),
    "vote": ("rxlens.analytics.majority_vote", lambda: analytics.majority_vote),
    "mean_of_scores": ("rxlens.analytics.mean_scores", lambda: analytics.mean_scores),
    "default_label": ("rxlens.analytics.default_label", lambda: analytics.default_label),
}
_deprecated = module_getattr(__name__, _DEPRECATED)


__getattr__ = _deprecated
