"""The typed path's JSON decoding without json.loads's wrapper: json.loads's results, exactly.

``parse_event`` calls the stdlib's C scanner directly and falls back to ``json.loads`` on
anything unusual. The laws: wherever the scanner alone answers, ``json.loads`` gives that very
value (same types, same float bits, same key order); wherever ``json.loads`` fails, the scanner
does not answer; and on compact JSON (what servers send) the scanner does answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxlens import _event_decoding
from rxlens._event_decoding import _NOT_SCANNED, _scan
from rxlens.events import MalformedEvent, parse_event
from rxlens.sse import Event


def same(a: Any, b: Any) -> bool:
    """Equal with the same types throughout, floats bit for bit (NaN, -0.0) and key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and (
            a == b or (math.isnan(a) and math.isnan(b))
        )
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def reference(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)

#: Text near JSON: valid documents, cut short, wrapped in whitespace or a BOM, with extra data.
json_like = st.one_of(
    st.text(),
    st.text(alphabet='{}[]",:0123456789.eE+-truefalsn \t\n\r\\u\ufeff'),
    st.builds(
        lambda v, cut, pre, post: (pre + json.dumps(v) + post)[: cut or None],
        json_values,
        st.integers(min_value=0, max_value=40),
        st.sampled_from(["", " ", "\n", "\ufeff", "\x0c", "x"]),
        st.sampled_from(["", " ", "\r\n", "\x0c", "1", "}", "\u00a0"]),
    ),
)


@settings(max_examples=300)
@given(json_like)
def test_the_scanner_answers_only_with_json_loads_value(text: str) -> None:
    ok, expected = reference(text)
    fast = _scan(text)
    if fast is _NOT_SCANNED:
        return
    assert ok, f"json.loads fails on {text!r} but the scan gave {fast!r}"
    assert same(fast, expected)


@settings(max_examples=200)
@given(json_values, st.booleans())
def test_the_scanner_answers_on_compact_json(value: Any, ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii, separators=(",", ":"))
    fast = _scan(text)
    assert fast is not _NOT_SCANNED
    assert same(fast, json.loads(text))


@pytest.mark.parametrize(
    "text",
    [" {}", "{} ", "{}\n", "\ufeff{}", "{}{}", "{", "", "[" * 100_000, b"{}", None, 1],
)
def test_unusual_input_is_left_to_json_loads(text: Any) -> None:
    assert _scan(text) is _NOT_SCANNED


def _parsed(text: str) -> tuple[type, Any, Any]:
    event = parse_event(Event(text, id="7"), received_at=1.0)
    assert event is not None
    errors = event.errors if isinstance(event, MalformedEvent) else None
    return type(event), event, errors


envelopes = st.one_of(
    json_like,
    st.builds(
        lambda t, data: json.dumps({"type": t, "event_data": data}),
        st.sampled_from(
            ["inference.result", "session.modify.result", "sse.stream.end", "log.x", "other"]
        ),
        json_values,
    ),
)


@settings(max_examples=300)
@given(envelopes)
def test_parse_event_is_the_same_with_and_without_the_scanner(text: str) -> None:
    fast = _parsed(text)
    saved = _event_decoding._scan_once
    _event_decoding._scan_once = None  # the json.loads path, as before
    try:
        slow = _parsed(text)
    finally:
        _event_decoding._scan_once = saved
    assert fast[0] is slow[0]
    assert fast[2] == slow[2]
    if fast[0] is not MalformedEvent:
        assert fast[1] == slow[1]
        assert same(fast[1].event_data, slow[1].event_data)
