"""Operators for Lens streams. Each lives in its own module; this is their documented face.

Connection and Lens events:

- :func:`resume`: reconnect after retryable errors and drop replayed events.
- :func:`heartbeat_timeout`: fail a connection silent for too long (put it before ``resume``).
- :func:`typed`: decode SSE events into typed Lens events.
- :func:`until_end`: complete on ``sse.stream.end``.
- :func:`only_results`: keep ``inference.result`` events.

Analytics:

- :func:`window_results`: tumbling or sliding windows, by count, by time or both; in event
  time (``time=``) and per session (``per_session=True``) as :class:`Window` records.
- :func:`label_counts`, :func:`majority_vote`, :func:`mean_scores`: aggregates per window
  (and :func:`count_labels`, :func:`vote`, :func:`mean_of_scores` for plain lists); on
  :class:`Window` records they emit :class:`Windowed` records that keep the window's context.
- :func:`rate`: results per second.
- :func:`rising_edge`, :func:`changes`: alerts and label changes.
- :func:`merge_sessions`, :func:`by_session`: many sessions in one stream, and back.
- :func:`to_jsonl`: record a stream as it passes (replay it with :func:`rxlens.replay`).
"""

from __future__ import annotations

from rxlens.operators._by_session import by_session
from rxlens.operators._changes import Change, changes
from rxlens.operators._event_time import Window, Windowed
from rxlens.operators._heartbeat_timeout import heartbeat_timeout
from rxlens.operators._label_counts import count_labels, default_label, label_counts
from rxlens.operators._majority_vote import majority_vote, vote
from rxlens.operators._mean_scores import mean_of_scores, mean_scores
from rxlens.operators._merge_sessions import RecordedSessionError, SessionFailed, merge_sessions
from rxlens.operators._only_results import only_results
from rxlens.operators._rate import rate
from rxlens.operators._resume import resume
from rxlens.operators._rising_edge import rising_edge
from rxlens.operators._typed import typed
from rxlens.operators._until_end import until_end
from rxlens.operators._window_results import window_results

__all__ = [
    "Change",
    "RecordedSessionError",
    "SessionFailed",
    "Window",
    "Windowed",
    "by_session",
    "changes",
    "count_labels",
    "default_label",
    "heartbeat_timeout",
    "label_counts",
    "majority_vote",
    "mean_of_scores",
    "mean_scores",
    "merge_sessions",
    "only_results",
    "rate",
    "resume",
    "rising_edge",
    "to_jsonl",
    "typed",
    "until_end",
    "vote",
    "window_results",
]


def __getattr__(name: str) -> object:
    # to_jsonl lives with the sinks, which import the operators: imported on first use.
    if name == "to_jsonl":
        from rxlens.sinks import to_jsonl

        return to_jsonl
    raise AttributeError(f"module 'rxlens.operators' has no attribute {name!r}")
