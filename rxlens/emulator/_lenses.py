"""Scripted lenses: deterministic generators of Lens events.

A scripted lens is a function ``(rng, index, options) -> payload`` that builds the ``index``-th
event of a session from a :class:`random.Random` seeded once per session. Nothing reads a clock:
timestamps are derived from ``index`` and the session's nominal period, so the same seed gives
byte-identical events whatever the pace they are produced at.

Every lens also honours ``error_rate``: the probability that an event is an ``inference.error``
instead of a result.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Payload = dict[str, Any]
LensScript = Callable[[random.Random, int, Mapping[str, Any]], Payload]

#: The nominal epoch of scripted ``query_timestamp`` values (2025-03-13 05:20 UTC).
EPOCH = 1741843200.0

_ACTIVITIES = (
    "Person is stirring a pot on the stove.",
    "Person is chopping vegetables on a cutting board.",
    "Person is washing dishes in the sink.",
    "Person walks across the kitchen.",
    "The kitchen is empty.",
    "Person opens the refrigerator.",
)
_QUIET = (
    "No alert: the front door area is clear.",
    "No alert: a car passes on the street.",
    "No alert: leaves move in the wind.",
)
_ALERTS = (
    "Alert: person approaching the front door",
    "Alert: package left at the front door",
)


def _hex(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _text_result(text: str, rng: random.Random, index: int, options: Mapping[str, Any]) -> Payload:
    seconds_per_result = float(options.get("video_step_sec", 5.0))
    position = index * seconds_per_result
    fps = int(options.get("fps", 30))
    first = int(position * fps)
    frame_ids = [first + k * fps // 6 for k in range(3)]
    meta: dict[str, Any] = {"frame_ids": frame_ids}
    event_data: dict[str, Any] = {"response": [text], "query_id": f"qry-{_hex(rng)}"}
    # Sources disagree on where sensor_timestamp sits; option "timestamp_in" picks one.
    if options.get("timestamp_in", "query_metadata") == "event_data":
        event_data["sensor_timestamp"] = _hms(position)
        event_data["query_time_sec"] = round(0.8 + rng.random(), 3)
    else:
        meta["sensor_timestamp"] = _hms(position)
    event_data["query_metadata"] = meta
    return {"type": "inference.result", "event_data": event_data}


def activity_monitor(rng: random.Random, index: int, options: Mapping[str, Any]) -> Payload:
    """Activity Monitor (video): one sentence per ~5 s of video, with ``sensor_timestamp``
    (``HH:MM:SS``) and ``frame_ids``."""
    return _text_result(rng.choice(_ACTIVITIES), rng, index, options)


def alert(rng: random.Random, index: int, options: Mapping[str, Any]) -> Payload:
    """Alert-style instruction: mostly quiet text, ``"Alert: ..."`` with ``alert_rate``
    (default 0.2)."""
    is_alert = rng.random() < float(options.get("alert_rate", 0.2))
    text = rng.choice(_ALERTS if is_alert else _QUIET)
    return _text_result(text, rng, index, options)


class _Regime:
    """The current regime of one Machine State session: its class and the result it is at."""

    __slots__ = ("index", "label")

    def __init__(self, label: int, index: int) -> None:
        self.label = label
        self.index = index


# One regime per session, keyed by the session's own generator (a session draws its events in
# order from one seeded Random), so no clock and no global state decides what comes next; an
# ended session's entry goes with its generator.
_REGIMES: weakref.WeakKeyDictionary[random.Random, _Regime] = weakref.WeakKeyDictionary()


def _mean_stretch(options: Mapping[str, Any], label: str) -> float | None:
    value = options.get("mean_stretch", 8.0)
    if isinstance(value, Mapping):
        value = value.get(label, 8.0)
    if value is None or float(value) <= 0:
        return None
    return max(float(value), 1.0)


def _regime(
    rng: random.Random, index: int, classes: list[str], options: Mapping[str, Any]
) -> int | None:
    """The class index the machine is in for result ``index`` (``None``: no regimes)."""
    initial = options.get("initial", classes[0])
    start = classes.index(initial) if initial in classes else 0
    state = _REGIMES.get(rng)
    if state is None or index <= state.index:
        state = _REGIMES[rng] = _Regime(start, index)
        return start if _mean_stretch(options, classes[start]) is not None else None
    mean = _mean_stretch(options, classes[state.label])
    if mean is None:
        state.index = index
        return None
    # A regime ends after each result with probability 1 / mean: stretches are geometric with
    # that mean (in results), then the machine moves to one of the other classes.
    if len(classes) > 1 and rng.random() < 1.0 / mean:
        others = [i for i in range(len(classes)) if i != state.label]
        state.label = rng.choice(others)
    state.index = index
    return state.label


def machine_state(rng: random.Random, index: int, options: Mapping[str, Any]) -> Payload:
    """Machine State (CSV): ``[label, scores]``.

    The machine goes through *regimes*: stretches of results during which one class holds (a
    machine is HEALTHY for a while, then BROKEN for a few seconds, ...). Each of the ``k``
    kNN votes goes to the regime's class with probability ``purity``, else to a random class,
    and the label is the class with most votes, so a stretch reads as mostly one label with
    some noise.

    Options: ``classes`` (default ``["HEALTHY", "BROKEN"]``), ``mean_stretch`` (the mean length
    of a regime in results, default 8: at ``period=1`` s, stretches of seconds; a mapping
    ``{"HEALTHY": 30, "BROKEN": 5}`` sets it per class; ``0`` or ``null`` draws every result
    independently, the regime-free behaviour), ``purity`` (default 0.85), ``initial`` (the
    class of the first regime, default the first class), ``k`` (votes, 5), ``scores``
    (``"votes"``: raw kNN votes out of ``k``, ``"percent"``, ``"unit"``: 0..1 floats),
    ``unknown_rate`` (default 0.05, the label ``"unknown"``), ``mode`` (``"file"``:
    ``read_index`` windows of ``window_size`` rows stepping by ``step_size``; ``"push"``: no
    ``read_index``), ``file_id``, ``window_size`` (100), ``step_size`` (= window), ``period``
    (seconds between the results' ``query_timestamp``).

    The regime is drawn from the session's seeded generator in result order, so a seed gives
    the same stretches whatever the pace.
    """
    classes = list(options.get("classes", ("HEALTHY", "BROKEN")))
    k = int(options.get("k", 5))
    regime = _regime(rng, index, classes, options)
    purity = float(options.get("purity", 0.85))
    votes = [0] * len(classes)
    for _ in range(k):
        if regime is not None and rng.random() < purity:
            votes[regime] += 1
        else:
            votes[rng.randrange(len(classes))] += 1
    style = options.get("scores", "votes")
    scores: dict[str, float | int]
    if style == "percent":
        scores = {c: round(100.0 * v / k, 1) for c, v in zip(classes, votes, strict=False)}
    elif style == "unit":
        scores = {c: round(v / k, 3) for c, v in zip(classes, votes, strict=False)}
    else:
        scores = dict(zip(classes, votes, strict=False))
    label = classes[max(range(len(classes)), key=lambda i: votes[i])]
    if rng.random() < float(options.get("unknown_rate", 0.05)):
        label = "unknown"
    window = int(options.get("window_size", 100))
    step = int(options.get("step_size", window))
    inner: dict[str, Any] = {"file_id": options.get("file_id", "data.csv"), "window_size": window}
    if options.get("mode", "file") == "file":
        inner["read_index"] = index * step
        inner["total_rows"] = int(options.get("total_rows", max(1000, (index + 1) * step)))
    timestamp = EPOCH + index * float(options.get("period", 1.0))
    return {
        "type": "inference.result",
        "event_data": {
            "response": [label, scores],
            "query_metadata": {"query_timestamp": timestamp, "query_metadata": inner},
        },
    }


def embeddings(rng: random.Random, index: int, options: Mapping[str, Any]) -> Payload:
    """Embeddings: ``channels`` (4) lists of ``dim`` (768) floats, rounded to 4 decimals."""
    channels = int(options.get("channels", 4))
    dim = int(options.get("dim", 768))
    vectors = [[round(rng.gauss(0.0, 0.5), 4) for _ in range(dim)] for _ in range(channels)]
    window = int(options.get("window_size", 100))
    return {
        "type": "inference.result",
        "event_data": {
            "response": vectors,
            "query_metadata": {
                "query_timestamp": EPOCH + index * float(options.get("period", 1.0)),
                "query_metadata": {
                    "read_index": index * window,
                    "file_id": options.get("file_id", "data.csv"),
                },
            },
        },
    }


def inference_error(rng: random.Random) -> Payload:
    """The ``inference.error`` shape the notes record."""
    return {
        "type": "inference.error",
        "event_data": {"error_messages": [f"query_id: session-modify-qry-{_hex(rng)} failed!"]},
    }


def modify_result(class_name: str) -> Payload:
    """The ``session.modify.result`` acknowledgement of one training class."""
    return {
        "type": "session.modify.result",
        "event_data": {"query_metadata": {"class_name": class_name}},
    }


@dataclass(frozen=True, slots=True)
class LensSpec:
    """A scripted lens: its name, what it does, its default rate (events/s) and script."""

    name: str
    description: str
    default_rate: float
    script: LensScript | None


#: The scripted lenses, by name. ``"manual"`` emits only what :meth:`LensEmulator.push` gives.
LENSES: dict[str, LensSpec] = {
    spec.name: spec
    for spec in (
        LensSpec("manual", "emits only what push() and play() give", 0.0, None),
        LensSpec("activity-monitor", "video activity descriptions", 1.0, activity_monitor),
        LensSpec("alert", "alert-style text, 'Alert: ...' now and then", 1.0, alert),
        LensSpec("machine-state", "CSV window classification [label, scores]", 1.0, machine_state),
        LensSpec("embeddings", "4 x 768 float embeddings", 1.0, embeddings),
    )
}


def generate(spec: LensSpec, rng: random.Random, index: int, options: Mapping[str, Any]) -> Payload:
    """The ``index``-th event of a scripted lens (an ``inference.error`` with ``error_rate``)."""
    if spec.script is None:
        raise ValueError(f"lens {spec.name!r} is not scripted")
    error_rate = float(options.get("error_rate", 0.0))
    # Draw the error decision first, always, so error_rate does not shift the other draws'
    # meaning: the same seed gives the same results where no error was drawn.
    roll = rng.random()
    if roll < error_rate:
        return inference_error(rng)
    return spec.script(rng, index, options)
