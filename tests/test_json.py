"""JSON decoding without json.loads's wrapper (``rxlens._json``): json.loads's results, exactly.

``rxlens._json.loads`` (behind ``Event.json()`` and ``parse_event``) calls the stdlib's C scanner
directly and leaves anything unusual to ``json.loads``. The laws: it returns what ``json.loads``
returns (same types, same float bits, same key order) and raises what it raises; on compact JSON
(what servers send) the scanner alone answers; and without the scanner nothing changes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxlens import _json
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


def outcome(decode: Any, text: Any) -> tuple[str, Any]:
    """("value", v) or ("error", (type, message, position, the context's type))."""
    try:
        return "value", decode(text)
    except Exception as exc:
        where = getattr(exc, "pos", None)
        context = type(exc.__context__)
        return "error", (type(exc), str(exc)[:200], where, context, exc.__suppress_context__)


def same_outcome(text: Any) -> None:
    got, expected = outcome(_json.loads, text), outcome(json.loads, text)
    assert got[0] == expected[0], f"{text!r}: {got} != {expected}"
    if got[0] == "value":
        assert same(got[1], expected[1])
    else:
        assert got[1] == expected[1]


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
def test_loads_gives_json_loads_value_or_error(text: str) -> None:
    same_outcome(text)


@settings(max_examples=300)
@given(json_like)
def test_event_json_is_json_loads_of_its_data(text: str) -> None:
    event = Event(text, id="7")
    got, expected = outcome(Event.json, event), outcome(json.loads, text)
    assert got[0] == expected[0]
    if got[0] == "value":
        assert same(got[1], expected[1])
    else:
        assert got[1] == expected[1]


def _without_json_loads() -> Any:
    """json.loads made to fail: what still decodes was decoded by the scanner alone."""

    def refuse(text: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"json.loads was called on {text!r}")

    patch = pytest.MonkeyPatch()
    patch.setattr(json, "loads", refuse)
    return patch


@settings(max_examples=200)
@given(json_values, st.booleans())
def test_the_scanner_alone_answers_on_compact_json(value: Any, ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii, separators=(",", ":"))
    expected = json.loads(text)
    patch = _without_json_loads()
    try:
        fast = _json.loads(text)
    finally:
        patch.undo()
    assert same(fast, expected)


@pytest.mark.parametrize(
    "text",
    [" {}", "{} ", "{}\n", "\ufeff{}", "{}{}", "{", "", "[" * 100_000, b"{}", b"\xef\xbb\xbf[]"],
)
def test_unusual_input_is_left_to_json_loads(text: Any) -> None:
    patch = _without_json_loads()
    try:
        with pytest.raises(AssertionError, match=r"json\.loads was called"):
            _json.loads(text)
    finally:
        patch.undo()
    same_outcome(text)


def test_a_str_subclass_is_left_to_json_loads() -> None:
    class Text(str):
        pass

    patch = _without_json_loads()
    try:
        with pytest.raises(AssertionError, match=r"json\.loads was called"):
            _json.loads(Text("{}"))
    finally:
        patch.undo()
    assert _json.loads(Text('{"a":1}')) == {"a": 1}


@settings(max_examples=200)
@given(json_like)
def test_without_the_c_scanner_loads_is_json_loads(text: str) -> None:
    saved = _json.scan_once
    _json.scan_once = None  # another interpreter, without the C extension
    try:
        patch_free = outcome(_json.loads, text)
    finally:
        _json.scan_once = saved
    expected = outcome(json.loads, text)
    assert patch_free[0] == expected[0]
    if expected[0] == "value":
        assert same(patch_free[1], expected[1])
    else:
        assert patch_free[1] == expected[1]


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
    saved = _json.scan_once
    _json.scan_once = None  # the json.loads path, as before
    try:
        slow = _parsed(text)
    finally:
        _json.scan_once = saved
    assert fast[0] is slow[0]
    assert fast[2] == slow[2]
    if fast[0] is not MalformedEvent:
        assert fast[1] == slow[1]
        assert same(fast[1].event_data, slow[1].event_data)
