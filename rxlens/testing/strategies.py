"""Hypothesis strategies for Lens events, timed Lens streams and their SSE bytes.

A pipeline is only as well tested as the streams it was tried on, and hand-built streams are
the ones its author already thought of. These strategies draw what a Lens server really sends
(every event type, every result shape seen in the field, heartbeats in the quiet stretches,
dropped connections with the events a resume replays, id sequences that restart) so that a
property test finds the stream the author did not think of, and shrinks it to a small one:

    >>> from hypothesis import given, settings
    >>> from rxlens.operators import only_results
    >>> from rxlens.testing import run
    >>> @settings(max_examples=20, deadline=None)
    ... @given(lens_streams(drops=False, restarts=False))
    ... def test_only_results_keeps_every_result(stream):
    ...     emitted = run(lambda events: events.pipe(only_results()), stream)
    ...     assert emitted.values == [e for e in stream.sent if e.type == "inference.result"]
    >>> test_only_results_keeps_every_result()

- :func:`lens_events`: one typed event of any kind (results in each lens's shapes);
- :func:`lens_streams`: a session as the client sees it, a :class:`TimedStream` of
  ``(seconds, LensEvent)``;
- :func:`frames`: the SSE bytes of such a stream, cut into arbitrary chunks.

Every event is built from its JSON envelope by :func:`rxlens.events.from_payload`, so it is
exactly what the parser makes of that frame: ``to_json`` and the parser give it back unchanged.
Malformed frames are drawn only when asked (``malformed=True``).

hypothesis is not a dependency of rxlens; importing this module without it raises
:class:`rxlens.sinks.MissingDependency` saying what to install.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from rxlens._timed import TimedStream
from rxlens.events import (
    HEARTBEAT,
    INFERENCE_ERROR,
    INFERENCE_RESULT,
    MODIFY_RESULT,
    STREAM_END,
    STREAM_START,
    LensEvent,
    MalformedEvent,
    from_payload,
    to_json,
)
from rxlens.sinks import MissingDependency

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - exercised by a test that hides hypothesis
    raise MissingDependency(
        "rxlens.testing.strategies needs hypothesis, a test dependency: "
        "pip install hypothesis (or pip install 'rxlens[test]')"
    ) from exc

__all__ = [
    "KINDS",
    "LENSES",
    "SCORE_STYLES",
    "SSEFrames",
    "TimedStream",
    "frames",
    "kind_of",
    "lens_events",
    "lens_streams",
]

#: The lenses whose result shapes :func:`lens_events` draws (the emulator's scripted lenses).
LENSES = ("activity-monitor", "alert", "machine-state", "embeddings")

#: The three ways Machine State scores are written: raw kNN votes, percentages, 0-1 floats.
SCORE_STYLES = ("votes", "percent", "probability")

#: Every kind of event :func:`lens_events` draws (``kind_of`` names an event's kind).
KINDS = (
    "start",
    "heartbeat",
    "end",
    "result",
    "modify",
    "error",
    "log",
    "unknown",
    "malformed",
)

_STATUSES = ("SESSION_STATUS_RUNNING", "LensSessionStatus.SESSION_STATUS_RUNNING", "3")
_LABELS = ("HEALTHY", "BROKEN", "IDLE", "OVERHEAT")
_UNKNOWN_TYPES = (
    "error_message",
    "frame.processed",
    "error",
    "stream.start",
    "inference.start",
    "inference.reset",
    "stream.end",
    "stream.null",
)
_LOG_TYPES = ("log.info", "log.warning", "log.error", "log.debug")

# Frames that are not valid Lens events, one per way a frame can fail: not JSON, JSON that is
# not an object, no string type, and typed payloads their schema refuses. All single-line.
_MALFORMED_FRAMES = (
    "{not json",
    "Person is stirring a pot",
    "[1, 2, 3]",
    '"inference.result"',
    '{"event_data": {"response": ["ok"]}}',
    '{"type": 7, "event_data": {}}',
    '{"type": "sse.stream.heartbeat", "event_data": {"num_messages": "lots"}}',
    '{"type": "inference.error", "event_data": {"error_messages": 5}}',
    '{"type": "inference.result", "event_data": {"query_id": "qry-1"}}',
    '{"type": "sse.stream.start", "event_data": "lsn-1"}',
)


def kind_of(event: LensEvent) -> str:
    """The kind of an event, one of :data:`KINDS` (for counting what a strategy drew)."""
    return {
        STREAM_START: "start",
        HEARTBEAT: "heartbeat",
        STREAM_END: "end",
        INFERENCE_RESULT: "result",
        MODIFY_RESULT: "modify",
        INFERENCE_ERROR: "error",
    }.get(event.type) or (
        "malformed"
        if isinstance(event, MalformedEvent)
        else "log"
        if event.type.startswith("log.")
        else "unknown"
    )


# --- payloads ----------------------------------------------------------------------------------
# Strategies are built once and reused: building one inside a draw costs more than the draw.


@functools.cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _pick(options: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(options)


@functools.cache
def _floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False)


_bools = st.booleans()

_words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40
)
_hex = st.binary(min_size=4, max_size=8).map(bytes.hex)
_session_ids = _hex.map(lambda h: "lsn-" + h)
_json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _words
_json_values = st.recursive(
    _json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_words, inner, max_size=3),
    max_leaves=6,
)


def _timestamp(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@st.composite
def _activity(draw: st.DrawFn, alert: bool) -> dict[str, Any]:
    text = draw(_words)
    if alert and draw(_bools):
        text = draw(_pick(("Alert: ", "ALERT: ", "alert - "))) + text
    position = _timestamp(draw(_ints(0, 4 * 3600)))
    data: dict[str, Any] = {"response": [text]}
    if draw(_bools):
        data["query_id"] = "qry-" + draw(_hex)
    # The sensor position sits under query_metadata in one source, beside the response in
    # another: draw both.
    if draw(_bools):
        first = draw(_ints(0, 10_000))
        data["query_metadata"] = {
            "sensor_timestamp": position,
            "frame_ids": [first + 5 * i for i in range(draw(_ints(1, 4)))],
        }
    else:
        data["sensor_timestamp"] = position
        data["query_time_sec"] = draw(_floats(0, 30))
    return data


_other_labels = st.lists(st.sampled_from(_LABELS), max_size=3, unique=True)


def _scores(draw: st.DrawFn, label: str, style: str) -> dict[str, float | int]:
    names = [label, *draw(_other_labels)]
    names = list(dict.fromkeys(names))
    if style == "votes":
        return {name: draw(_ints(0, 10)) for name in names}
    weights = [draw(_ints(1, 100)) for _ in names]
    total = sum(weights)
    scale = 100.0 if style == "percent" else 1.0
    return {name: scale * w / total for name, w in zip(names, weights, strict=True)}


@st.composite
def _machine_state(draw: st.DrawFn) -> dict[str, Any]:
    push_mode = draw(_bools)
    label = draw(_pick(_LABELS + (("unknown",) if push_mode else ())))
    style = draw(_pick(SCORE_STYLES))
    meta: dict[str, Any] = {"query_timestamp": draw(_floats(1.7e9, 1.8e9))}
    if not push_mode:
        window = draw(_pick((50, 100, 200)))
        meta["query_metadata"] = {
            "read_index": window * draw(_ints(0, 50)),
            "file_id": "data.csv",
            "window_size": window,
            "total_rows": window * 51,
        }
    return {"response": [label, _scores(draw, label, style)], "query_metadata": meta}


def _embedding(size: int) -> st.SearchStrategy[dict[str, Any]]:
    value = st.floats(-1.0, 1.0, allow_nan=False, width=32)
    channel = st.lists(value, min_size=size, max_size=size)

    @st.composite
    def draw_embedding(draw: st.DrawFn) -> dict[str, Any]:
        return _embedding_payload(draw, [draw(channel) for _ in range(4)])

    return draw_embedding()


def _embedding_payload(draw: st.DrawFn, channels: list[list[float]]) -> dict[str, Any]:
    return {
        "response": channels,
        "query_metadata": {
            "query_timestamp": draw(_floats(1.7e9, 1.8e9)),
            "query_metadata": {"read_index": draw(_ints(0, 1000)), "file_id": "data.csv"},
        },
    }


def _result_payloads(lenses: Sequence[str], embedding_size: int) -> st.SearchStrategy[Any]:
    unknown = [name for name in lenses if name not in LENSES]
    if unknown or not lenses:
        raise ValueError(f"lenses must be some of {LENSES}, got {list(lenses)!r}")
    by_lens = {
        "activity-monitor": _activity(alert=False),
        "alert": _activity(alert=True),
        "machine-state": _machine_state(),
        "embeddings": _embedding(embedding_size),
    }
    return st.one_of([by_lens[name] for name in lenses])


def _envelope(lens_type: str, data: Any) -> dict[str, Any]:
    return {"type": lens_type, "event_data": data}


_log_data = st.one_of(_words, st.fixed_dictionaries({"message": _words}))


def _payload(
    draw: st.DrawFn,
    kind: str,
    session_id: str,
    results: st.SearchStrategy[Any],
) -> dict[str, Any] | str:
    if kind == "start":
        return _envelope(STREAM_START, {"session_id": session_id, "reader_id": draw(_hex)})
    if kind == "heartbeat":
        return _envelope(
            HEARTBEAT,
            {
                "session_id": session_id,
                "session_status": draw(_pick(_STATUSES)),
                "num_messages": draw(_ints(0, 10_000)),
                "num_bytes": draw(_ints(0, 10**7)),
                "message_timeout": draw(_pick((5.0, 10.0, 15.0, 20.0))),
            },
        )
    if kind == "end":
        stats = {
            "num_messages": draw(_ints(0, 10_000)),
            "num_bytes": draw(_ints(0, 10**7)),
            "num_errors": draw(_ints(0, 3)),
            "sse_run_time": draw(_floats(0, 3600)),
        }
        return _envelope(STREAM_END, stats if draw(_bools) else None)
    if kind == "result":
        return _envelope(INFERENCE_RESULT, draw(results))
    if kind == "modify":
        label = draw(_pick(_LABELS))
        return _envelope(MODIFY_RESULT, {"query_metadata": {"class_name": label}})
    if kind == "error":
        query = "session-modify-qry-" + draw(_hex)
        return _envelope(INFERENCE_ERROR, {"error_messages": [f"query_id: {query} failed!"]})
    if kind == "log":
        data = draw(_log_data)
        return _envelope(draw(_pick(_LOG_TYPES)), data)
    if kind == "unknown":
        return _envelope(draw(_pick(_UNKNOWN_TYPES)), draw(_json_values))
    frame: str = draw(_pick(_MALFORMED_FRAMES))
    return frame


def _load_schemas() -> None:
    # Malformed frames are judged by the marshmallow schemas, imported on first use; import
    # them now, or the first draw looks slow to hypothesis's health check.
    import rxlens.schemas  # noqa: F401


def _build(payload: dict[str, Any] | str, event_id: str | None, at: float) -> LensEvent:
    if isinstance(payload, dict):
        # The frame as a server writes it, so raw is what the parser would keep.
        payload = json.dumps(payload, separators=(",", ":"))
    return from_payload(payload, id=event_id, received_at=at)


def lens_events(
    lenses: Sequence[str] = LENSES,
    *,
    malformed: bool = False,
    kinds: Sequence[str] | None = None,
    session_id: str | None = None,
    ids: bool = True,
    embedding_size: int = 8,
) -> st.SearchStrategy[LensEvent]:
    """Draw one typed Lens event of any kind.

    ``lenses`` chooses the result shapes: ``"activity-monitor"`` (text, sensor position in
    either place), ``"alert"`` (the same, some texts ``"Alert: ..."``), ``"machine-state"``
    (label and scores as votes, percentages or 0-1 floats; file mode with a window, or push
    mode), ``"embeddings"`` (4 channels of ``embedding_size`` floats). ``kinds`` limits the
    kinds drawn (see :data:`KINDS`); ``malformed=True`` adds frames that are not valid Lens
    events (as :class:`~rxlens.events.MalformedEvent`). ``session_id`` fixes the session of
    start and heartbeat frames; ``ids=False`` draws events without an SSE id.

    Every drawn event equals what the parser makes of its own frame, and (unless malformed)
    ``to_json`` gives that frame back.

    Raises:
        ValueError: an unknown lens or kind, or ``"malformed"`` in ``kinds`` without
            ``malformed=True``.
    """
    chosen = tuple(kinds) if kinds is not None else KINDS[:-1] + (("malformed",) * malformed)
    bad = [kind for kind in chosen if kind not in KINDS]
    if bad or not chosen:
        raise ValueError(f"kinds must be some of {KINDS}, got {list(chosen)!r}")
    if "malformed" in chosen and not malformed:
        raise ValueError("kinds includes 'malformed': pass malformed=True to draw such frames")
    results = _result_payloads(lenses, embedding_size)
    if "malformed" in chosen:
        _load_schemas()

    @st.composite
    def draw_event(draw: st.DrawFn) -> LensEvent:
        kind = draw(_pick(chosen))
        sid = session_id if session_id is not None else draw(_session_ids)
        event_id = str(draw(_ints(1, 10**6))) if ids and draw(_bools) else None
        at = draw(_floats(1.7e9, 1.8e9))
        return _build(_payload(draw, kind, sid, results), event_id, at)

    return draw_event()


# --- streams -----------------------------------------------------------------------------------


def lens_streams(
    lenses: Sequence[str] = ("machine-state",),
    *,
    min_results: int = 0,
    max_results: int = 30,
    rate: float = 1.0,
    heartbeat_interval: float = 5.0,
    end: bool | None = None,
    drops: bool = True,
    restarts: bool = True,
    others: bool = True,
    malformed: bool = False,
    ids: bool = True,
    session_id: str | None = None,
    start_at: float = 1.75e9,
    embedding_size: int = 8,
) -> st.SearchStrategy[TimedStream]:
    """Draw a session as one client sees it: a :class:`TimedStream` of ``(seconds, event)``.

    The stream opens with ``sse.stream.start`` at 0 s. Results (``min_results`` to
    ``max_results`` of them, of the ``lenses``' shapes) come on average ``rate`` per second with
    irregular gaps; in every stretch of ``heartbeat_interval`` seconds without a frame the
    server sends a heartbeat (its ``message_timeout`` growing). Data events carry increasing
    SSE ids ``"1"``, ``"2"``, ... (none when ``ids=False``); ``received_at`` is ``start_at``
    plus the event's seconds.

    The fault mix: ``drops`` lets the connection drop after any event, then a new
    ``sse.stream.start`` (a new reader id) is followed by the last few events again, as a
    server resuming from an older cursor replays them (same ids, equal events; only with ids);
    ``restarts`` lets the server's id sequence start again from ``"1"`` on a new connection
    (new events, reused ids); ``others`` mixes in modify acknowledgements, inference errors,
    log lines and unknown types; ``malformed`` adds frames that are not valid Lens events.
    ``end`` chooses whether the stream ends with ``sse.stream.end`` (``None``: either).

    Raises:
        ValueError: a bad knob (negative counts, a non-positive rate or interval).
    """
    if min_results < 0 or max_results < min_results:
        raise ValueError("need 0 <= min_results <= max_results")
    if not (rate > 0 and math.isfinite(rate)) or not heartbeat_interval > 0:
        raise ValueError("rate and heartbeat_interval must be positive")
    results = _result_payloads(lenses, embedding_size)
    sid_strategy = st.just(session_id) if session_id is not None else _session_ids
    data_kinds = ["result"] + (["modify", "error", "log", "unknown"] if others else [])
    data_kinds += ["malformed"] * malformed
    mean_gap = 1.0 / rate
    if malformed:
        _load_schemas()

    @st.composite
    def draw_stream(draw: st.DrawFn) -> TimedStream:
        sid = draw(sid_strategy)
        stream = TimedStream()
        clock = 0.0
        last_frame = 0.0
        next_id = 1
        heartbeats = 0
        delivered: list[LensEvent] = []  # this connection's data events, for replays

        def emit(payload: dict[str, Any] | str, event_id: str | None) -> LensEvent:
            event = _build(payload, event_id, start_at + clock)
            stream.append((clock, event))
            return event

        def connect() -> None:
            emit(_envelope(STREAM_START, {"session_id": sid, "reader_id": draw(_hex)}), None)

        connect()
        n_results = draw(_ints(min_results, max_results))
        n_others = draw(_ints(0, max(1, n_results // 3))) if len(data_kinds) > 1 else 0
        plan = ["result"] * n_results + [
            draw(_pick(tuple(data_kinds[1:]))) for _ in range(n_others)
        ]
        order = draw(st.permutations(plan)) if plan else []
        for kind in order:
            # Irregular gaps around the mean, with now and then a long quiet stretch.
            gap = mean_gap * draw(_pick((0.0, 0.25, 0.5, 1.0, 1.0, 1.5, 2.0, 8.0)))
            due = clock + gap
            while due - last_frame >= heartbeat_interval:
                clock = last_frame + heartbeat_interval
                heartbeats += 1
                emit(
                    _envelope(
                        HEARTBEAT,
                        {
                            "session_id": sid,
                            "session_status": "SESSION_STATUS_RUNNING",
                            "num_messages": next_id - 1,
                            "num_bytes": 0,
                            "message_timeout": heartbeat_interval * (heartbeats + 1),
                        },
                    ),
                    None,
                )
                last_frame = clock
            clock = due
            payload = _payload(draw, kind, sid, results)
            event = emit(payload, str(next_id) if ids else None)
            next_id += 1
            stream.mark_sent()
            delivered.append(event)
            last_frame = clock
            heartbeats = 0
            fault = draw(
                st.sampled_from(
                    ("none",) * 6 + ("drop",) * drops + ("restart",) * (restarts and ids)
                )
            )
            if fault == "drop":
                stream.drops += 1
                clock += mean_gap * draw(_pick((0.0, 0.5, 1.0)))
                connect()
                replayed = draw(_ints(0, min(3, len(delivered)))) if ids else 0
                for old in delivered[len(delivered) - replayed :]:
                    stream.append((clock, replace(old, received_at=start_at + clock)))
                last_frame = clock
            elif fault == "restart":
                stream.restarts += 1
                clock += mean_gap
                connect()
                next_id = 1
                delivered = []
                last_frame = clock
        ended = draw(_bools) if end is None else end
        if ended:
            clock = max(clock, last_frame) + mean_gap
            emit(_envelope(STREAM_END, None), None)
        stream.ended = ended
        return stream

    return draw_stream()


# --- SSE bytes ---------------------------------------------------------------------------------


class SSEFrames(NamedTuple):
    """A stream's events and the SSE bytes that carry them, cut into chunks.

    Decoding ``b"".join(chunks)`` (in any chunking) and parsing each SSE event gives
    ``events`` back, equal one for one.
    """

    chunks: list[bytes]
    events: list[LensEvent]

    @property
    def data(self) -> bytes:
        """All the bytes, unchunked."""
        return b"".join(self.chunks)


def _encode(event: LensEvent, style: int) -> str:
    if isinstance(event, MalformedEvent):
        data = event.raw
    else:
        # Compact JSON or the default separators: servers differ, the parser must not care.
        # Non-ASCII text as escapes or as UTF-8 (then a chunk may end inside a character).
        separators = (",", ":") if style & 1 else None
        data = json.dumps(to_json(event), separators=separators, ensure_ascii=not style & 16)
    lines = []
    if style & 2:
        lines.append(": keep-alive")  # a comment line, which the spec allows anywhere
    if event.id is not None:
        lines.append(f"id: {event.id}")
    if style & 4:
        lines.append("event: message")
    lines.append(f"data: {data}" if style & 8 else f"data:{data}")
    return "\n".join(lines) + "\n\n"


def frames(
    streams: st.SearchStrategy[Sequence[tuple[float, LensEvent]]] | None = None,
    *,
    max_chunks: int = 20,
) -> st.SearchStrategy[SSEFrames]:
    """Draw the SSE bytes of a drawn stream (default :func:`lens_streams`), cut anywhere.

    Each event becomes one SSE block: an ``id:`` line when it has an id, sometimes a comment
    line and an ``event: message`` line, one ``data:`` line (with or without the space), a blank
    line; compact or spaced JSON. The bytes are split at up to ``max_chunks - 1`` arbitrary
    points (inside a line, inside a UTF-8 character, between ``\\n`` and ``\\n``), for testing a
    decoder or anything else below the typed layer.
    """
    source = streams if streams is not None else lens_streams()

    @st.composite
    def draw_frames(draw: st.DrawFn) -> SSEFrames:
        events = [event for _, event in draw(source)]
        data = "".join(_encode(event, draw(_ints(0, 31))) for event in events)
        raw = data.encode("utf-8")
        cuts = draw(
            st.lists(st.integers(0, len(raw)), max_size=max(0, max_chunks - 1), unique=True)
        )
        bounds = [0, *sorted(cuts), len(raw)]
        chunks = [raw[a:b] for a, b in itertools.pairwise(bounds)]
        return SSEFrames(chunks, events)

    return draw_frames()
