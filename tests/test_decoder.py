"""The SSE decoder against the WHATWG rules, one case per rule, plus chunking laws."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxlens.errors import EventTooLarge
from rxlens.sse import Decoder, Event
from rxlens.sse._decoder import RETRY_MAX_MS


def decode(stream: bytes, last_event_id: str = "") -> list[Event]:
    decoder = Decoder(last_event_id)
    return decoder.feed(stream) + decoder.close()


def decode_bytewise(stream: bytes) -> list[Event]:
    decoder = Decoder()
    events: list[Event] = []
    for i in range(len(stream)):
        events += decoder.feed(stream[i : i + 1])
    return events + decoder.close()


def pairs(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.type, e.data) for e in events]


# --- the spec's rules, one case each ----------------------------------------------------------


def test_simple_event() -> None:
    assert decode(b"data: hello\n\n") == [Event("hello", "message", "", None)]


def test_leading_bom_is_stripped() -> None:
    assert pairs(decode(b"\xef\xbb\xbfdata: a\n\n")) == [("message", "a")]


def test_bom_split_across_chunks_is_stripped() -> None:
    decoder = Decoder()
    out = decoder.feed(b"\xef") + decoder.feed(b"\xbb") + decoder.feed(b"\xbfdata: a\n\n")
    assert pairs(out) == [("message", "a")]


def test_only_one_bom_is_stripped() -> None:
    # The second BOM is part of the first line's field name, so the line is an unknown field.
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [Event("b")]


def test_bom_later_in_stream_is_data() -> None:
    assert pairs(decode(b"data: \xef\xbb\xbfx\n\n")) == [("message", "\ufeffx")]


def test_a_bom_at_the_start_of_a_later_chunk_is_not_stripped() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\xef\xbb\xbfdata: a\n\n") == [Event("a")]
    # The stream has started: this BOM is part of a field name, so the line is ignored.
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == []


def test_a_short_first_chunk_that_is_no_bom_is_a_partial_line() -> None:
    decoder = Decoder(max_event_bytes=1)
    assert decoder.feed(b"d") == []
    assert (decoder.pending_bytes, decoder.in_event) == (1, True)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"a")


def test_partial_bom_then_other_bytes() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\xef\xbb") == []
    # Not a BOM after all: the bytes decode (as U+FFFD) into the field name.
    assert decoder.feed(b"data: x\n\ndata: y\n\n") == [Event("y")]


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending(eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert pairs(decode(stream)) == [("message", "a\nb"), ("message", "c")]


def test_mixed_line_endings() -> None:
    stream = b"data: a\rdata: b\r\ndata: c\n\r\n"
    assert pairs(decode(stream)) == [("message", "a\nb\nc")]


def test_crlf_split_across_chunks_counts_once() -> None:
    decoder = Decoder()
    out = decoder.feed(b"data: a\r") + decoder.feed(b"\ndata: b\r") + decoder.feed(b"\n\r\n")
    assert pairs(out) == [("message", "a\nb")]


def test_an_empty_chunk_between_cr_and_lf_keeps_them_one_line_end() -> None:
    decoder = Decoder()
    events = decoder.feed(b"data: a\r") + decoder.feed(b"") + decoder.feed(b"\ndata: b\n\n")
    assert pairs(events) == [("message", "a\nb")]


def test_cr_cr_is_two_line_ends() -> None:
    assert pairs(decode(b"data: a\r\rdata: b\r\r")) == [("message", "a"), ("message", "b")]


def test_event_ended_by_cr_is_dispatched_at_once() -> None:
    decoder = Decoder()
    assert pairs(decoder.feed(b"data: a\r\r")) == [("message", "a")]


def test_lone_lf_after_cr_in_next_chunk_is_not_an_extra_blank_line() -> None:
    decoder = Decoder()
    # "id: 1\r" then "\n" must not be read as "id: 1", then an empty line (a dispatch).
    assert decoder.feed(b"data: x\nid: 1\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.last_event_id == ""
    assert decoder.feed(b"\n") == [Event("x", "message", "1", "1")]


def test_invalid_utf8_is_replaced_never_raises() -> None:
    assert pairs(decode(b"data: a\xffb\xc3\n\n")) == [("message", "a\ufffdb\ufffd")]


def test_multibyte_character_split_across_chunks() -> None:
    snowman = "\u2603".encode()
    decoder = Decoder()
    out = decoder.feed(b"data: " + snowman[:1]) + decoder.feed(snowman[1:2])
    out += decoder.feed(snowman[2:] + b"\n\n")
    assert pairs(out) == [("message", "\u2603")]


@pytest.mark.parametrize("char", ["\u2028", "\u0085", "\u000b", "\u000c", "\u2029"])
def test_only_cr_and_lf_end_lines(char: str) -> None:
    stream = f"data: a{char}b\n\n".encode()
    assert pairs(decode(stream)) == [("message", f"a{char}b")]


def test_one_space_after_colon_is_removed_no_more() -> None:
    assert pairs(decode(b"data:  two\n\ndata:none\n\n")) == [
        ("message", " two"),
        ("message", "none"),
    ]


def test_data_lines_joined_with_newline() -> None:
    assert pairs(decode(b"data: a\ndata:\ndata: c\n\n")) == [("message", "a\n\nc")]


def test_each_event_of_several_data_lines_has_only_its_own_lines() -> None:
    stream = b"data: a\ndata: b\n\ndata: c\ndata: d\n\n"
    assert decode(stream) == [Event("a\nb"), Event("c\nd")]


def test_fields_in_any_order_and_with_comments_between() -> None:
    stream = b"data: a\n: note\nevent: t\nid: 3\n\nevent:u\ndata:b\n\n"
    assert decode(stream) == [Event("a", "t", "3", "3"), Event("b", "u", "3", None)]


def test_field_without_colon_has_empty_value() -> None:
    assert pairs(decode(b"data\ndata\n\n")) == [("message", "\n")]
    assert pairs(decode(b"data\n\n")) == [("message", "")]


def test_block_without_data_dispatches_nothing_but_sets_id() -> None:
    decoder = Decoder()
    assert decoder.feed(b"id: 7\nevent: ping\n\n") == []
    assert decoder.last_event_id == "7"
    assert decoder.feed(b"data: x\n\n") == [Event("x", "message", "7", None)]


def test_last_event_id_persists_across_events() -> None:
    events = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n")
    assert [(e.data, e.last_event_id, e.id) for e in events] == [
        ("a", "1", "1"),
        ("b", "1", None),
        ("c", "2", "2"),
    ]


def test_seeded_last_event_id_is_kept() -> None:
    assert decode(b"data: a\n\n", last_event_id="41") == [Event("a", "message", "41", None)]


def test_id_with_nul_is_ignored() -> None:
    events = decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [(e.last_event_id, e.id) for e in events] == [("1", "1"), ("1", None)]


def test_empty_id_resets_last_event_id() -> None:
    decoder = Decoder("5")
    events = decoder.feed(b"id\ndata: a\n\n")
    assert events == [Event("a", "message", "", "")]
    assert decoder.last_event_id == ""


def test_id_is_committed_only_at_dispatch() -> None:
    decoder = Decoder()
    decoder.feed(b"id: 3\ndata: a\n")
    assert decoder.last_event_id == ""
    decoder.feed(b"\n")
    assert decoder.last_event_id == "3"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"1500", 1500),
        (b"0", 0),
        (b"007", 7),
        (b"1.5", None),
        (b"-1", None),
        (b" 10", 10),  # the one space after the colon is removed
        (b"  10", None),
        (b"10 ", None),
        (b"", None),
        ("\u0661\u0662".encode(), None),  # Arabic-Indic digits are not ASCII digits
        (b"\xc2\xb2", None),  # superscript two
    ],
)
def test_retry_only_all_ascii_digits(value: bytes, expected: int | None) -> None:
    decoder = Decoder()
    decoder.feed(b"retry:" + value + b"\n\n")
    assert decoder.retry == expected


def test_retry_invalid_keeps_previous_value() -> None:
    decoder = Decoder()
    decoder.feed(b"retry: 2000\n\nretry: soon\n\n")
    assert decoder.retry == 2000


def test_retry_is_none_before_any() -> None:
    assert Decoder().retry is None


def test_empty_event_field_means_message() -> None:
    assert pairs(decode(b"event:\ndata: a\n\nevent: x\ndata: b\n\n")) == [
        ("message", "a"),
        ("x", "b"),
    ]


def test_event_type_does_not_leak_into_next_event() -> None:
    assert pairs(decode(b"event: x\ndata: a\n\ndata: b\n\n")) == [("x", "a"), ("message", "b")]


def test_event_type_is_reset_by_block_without_data() -> None:
    assert pairs(decode(b"event: x\n\ndata: b\n\n")) == [("message", "b")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    stream = b": a comment\nfoo: bar\nDATA: upper\ndata : spaced\n:\ndata: ok\n\n"
    assert pairs(decode(stream)) == [("message", "ok")]


def test_unterminated_event_at_end_of_stream_is_discarded() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [Event("a")]
    assert decoder.in_event
    assert decoder.close() == []


def test_unterminated_line_at_end_of_stream_is_discarded() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a") == []
    assert decoder.pending_bytes == 7
    assert decoder.close() == []


def test_id_of_unfinished_block_is_not_committed_at_close() -> None:
    decoder = Decoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    decoder.close()
    assert decoder.last_event_id == "1"


@pytest.mark.parametrize("started", [b"data: a\n", b"event: x\n", b"id: 1\n", b"data: a"])
def test_close_ends_the_event_in_progress(started: bytes) -> None:
    decoder = Decoder()
    decoder.feed(started)
    assert decoder.in_event
    decoder.close()
    assert (decoder.in_event, decoder.pending_bytes) == (False, 0)


@pytest.mark.parametrize(
    "started, expected",
    [
        (b"data: a\n", Event("a\nb")),
        (b"event: t\n", Event("b", "t")),
        (b"id: 7\n", Event("b", "message", "7", "7")),
    ],
)
def test_an_event_begun_in_one_chunk_is_continued_by_the_next(
    started: bytes, expected: Event
) -> None:
    decoder = Decoder()
    assert decoder.feed(started) == []
    assert decoder.feed(b"data: b\n\n") == [expected]


def test_an_id_set_by_a_continued_event_carries_on() -> None:
    decoder = Decoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"id: 9\n\ndata: b\n\n") == [
        Event("a", "message", "9", "9"),
        Event("b", "message", "9", None),
    ]
    assert decoder.feed(b"data: c\n\n") == [Event("c", "message", "9", None)]


def test_an_id_carries_on_from_one_chunk_to_the_next() -> None:
    decoder = Decoder()
    assert decoder.feed(b"id: 5\ndata: a\n\n") == [Event("a", "message", "5", "5")]
    assert decoder.feed(b"data: b\n\n") == [Event("b", "message", "5", None)]
    assert decoder.last_event_id == "5"


def test_feed_after_close_is_an_error() -> None:
    decoder = Decoder()
    decoder.close()
    with pytest.raises(ValueError, match="after close"):
        decoder.feed(b"data: a\n\n")


def test_nul_in_data_is_kept() -> None:
    assert pairs(decode(b"data: a\x00b\n\n")) == [("message", "a\x00b")]


def test_colon_in_value_is_kept() -> None:
    assert pairs(decode(b'data: {"a": 1}\n\n')) == [("message", '{"a": 1}')]


# --- limits ----------------------------------------------------------------------------------


def test_event_too_large_names_the_limit() -> None:
    decoder = Decoder(max_event_bytes=100)
    with pytest.raises(EventTooLarge, match="max_event_bytes=100") as info:
        decoder.feed(b"data: " + b"x" * 200 + b"\n\n")
    assert info.value.limit == 100


def test_endless_line_raises_before_buffering_past_limit() -> None:
    decoder = Decoder(max_event_bytes=1000)
    for _ in range(9):
        decoder.feed(b"x" * 100)
    assert decoder.pending_bytes == 900
    with pytest.raises(EventTooLarge):
        decoder.feed(b"x" * 200)
    assert decoder.pending_bytes <= 1000


def test_endless_event_of_short_lines_raises() -> None:
    decoder = Decoder(max_event_bytes=1000)
    with pytest.raises(EventTooLarge):
        for _ in range(200):
            decoder.feed(b"data: 0123456789\n")


def test_events_before_an_oversized_one_are_kept_on_the_error() -> None:
    decoder = Decoder(max_event_bytes=50)
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(b"data: a\n\ndata: b\n\n" + b"data: " + b"x" * 100 + b"\n\n")
    assert pairs(info.value.events) == [("message", "a"), ("message", "b")]


def test_event_at_the_limit_passes() -> None:
    decoder = Decoder(max_event_bytes=17)  # "data: " + 10 bytes + its line end
    assert pairs(decoder.feed(b"data: " + b"x" * 10 + b"\n\n")) == [("message", "x" * 10)]


def test_max_event_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Decoder(max_event_bytes=0)


def test_big_event_in_many_chunks() -> None:
    body = b"y" * (2 * 2**20)
    stream = b"data: " + body + b"\n\n"
    decoder = Decoder()
    out: list[Event] = []
    for i in range(0, len(stream), 65536):
        out += decoder.feed(stream[i : i + 65536])
    assert len(out) == 1 and out[0].data == body.decode()


# --- laws ------------------------------------------------------------------------------------

line_end = st.sampled_from([b"\n", b"\r", b"\r\n"])
text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=12
)


@st.composite
def field_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["data", "event", "id", "retry", "comment", "unknown", "bare"]))
    value = draw(text)
    if kind == "comment":
        raw = ":" + value
    elif kind == "bare":
        raw = draw(st.sampled_from(["data", "id", "event", "retry"]))
    elif kind == "unknown":
        raw = "x" + value.replace(":", "") + ":" + value
    elif kind == "retry":
        raw = "retry: " + draw(st.one_of(st.integers(0, 10**6).map(str), text))
    else:
        space = draw(st.sampled_from(["", " ", "  "]))
        raw = kind + ":" + space + value
    return raw.encode() + draw(line_end)


@st.composite
def sse_stream(draw: st.DrawFn) -> bytes:
    parts = [b"\xef\xbb\xbf"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 8))):
        parts += draw(st.lists(field_line(), max_size=5))
        parts.append(draw(line_end))
    if draw(st.booleans()):
        parts.append(draw(st.binary(max_size=6)))  # junk, perhaps invalid UTF-8
    return b"".join(parts)


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def feed_all(chunks: list[bytes]) -> tuple[list[Event], str, int | None]:
    decoder = Decoder()
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events, decoder.last_event_id, decoder.retry


@settings(max_examples=300, deadline=None)
@given(sse_stream(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_chunking_gives_the_same_events(stream: bytes, cuts: list[int]) -> None:
    assert feed_all(split_at(stream, cuts)) == feed_all([stream])


@settings(max_examples=100, deadline=None)
@given(sse_stream())
def test_byte_by_byte_equals_whole(stream: bytes) -> None:
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == feed_all([stream])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 1000), max_size=8))
def test_arbitrary_bytes_never_raise_and_chunking_is_irrelevant(
    stream: bytes, cuts: list[int]
) -> None:
    assert feed_all(split_at(stream, cuts)) == feed_all([stream])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), text), max_size=10), line_end)
def test_generated_events_roundtrip(items: list[tuple[bool, str]], eol: bytes) -> None:
    # Serialise (id?, data) pairs; decoding gives them back, with sticky last event ids.
    stream = b""
    expected = []
    last = ""
    for n, (with_id, data) in enumerate(items):
        if with_id:
            stream += b"id: " + str(n).encode() + eol
            last = str(n)
        stream += b"data: " + data.encode() + eol + eol
        expected.append(Event(data, "message", last, str(n) if with_id else None))
    assert decode(stream) == expected
    assert decode_bytewise(stream) == expected


def reference_decode(stream: bytes) -> list[tuple[str, str, str]]:
    """A straightforward transcription of the spec, for comparison (slow but obvious)."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    current = ""
    i = 0
    complete = False
    while i < len(text):
        ch = text[i]
        if ch == "\r":
            lines.append(current)
            current = ""
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
            complete = True
        elif ch == "\n":
            lines.append(current)
            current = ""
            complete = True
        else:
            current += ch
            complete = False
        i += 1
    del complete
    out = []
    data, etype, last_id_buffer, last_id = "", "", "", ""
    for line in lines:
        if line == "":
            last_id = last_id_buffer
            if data == "":
                etype = ""
                continue
            if data.endswith("\n"):
                data = data[:-1]
            out.append((etype or "message", data, last_id))
            data, etype = "", ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "event":
            etype = value
        elif field == "data":
            data += value + "\n"
        elif field == "id" and "\x00" not in value:
            last_id_buffer = value
    return out


@settings(max_examples=300, deadline=None)
@given(sse_stream())
def test_agrees_with_a_literal_reading_of_the_spec(stream: bytes) -> None:
    assert [(e.type, e.data, e.last_event_id) for e in decode(stream)] == reference_decode(stream)


# --- the size rule: bytes of the event block as received, whatever the chunking ---------------
#
# ``max_event_bytes`` bounds the bytes of one event block: every line since the blank line that
# ended the previous event (field names, comments and line ends included, a line end counting
# one byte), up to the blank line that dispatches it.


def outcome(stream: bytes, cuts: list[int], limit: int) -> tuple[list[Event], bool]:
    """The events delivered and whether the decoder raised ``EventTooLarge``."""
    decoder = Decoder(max_event_bytes=limit)
    events: list[Event] = []
    try:
        for chunk in split_at(stream, cuts):
            events += decoder.feed(chunk)
    except EventTooLarge as exc:
        return events + exc.events, True
    return events + decoder.close(), False


BLOCK = b"data: xxxxxxxxx\n"  # 16 bytes with its line end


def test_whole_and_split_line_get_the_same_size_decision() -> None:
    # A whole line counted the characters of its value (10), a split one the bytes of the line.
    assert outcome(BLOCK + b"\n", [], 10) == ([], True)
    assert outcome(BLOCK + b"\n", [8], 10) == ([], True)


@pytest.mark.parametrize("bytewise", [False, True])
def test_an_event_exactly_at_the_limit_passes(bytewise: bool) -> None:
    stream = BLOCK + b"\n"
    cuts = list(range(len(stream))) if bytewise else []
    assert outcome(stream, cuts, len(BLOCK)) == ([Event("x" * 9)], False)


@pytest.mark.parametrize("bytewise", [False, True])
def test_an_event_at_the_limit_after_others_in_its_chunk_passes(bytewise: bool) -> None:
    stream = b"data: ok\n\n" + BLOCK + b"\n"
    cuts = list(range(len(stream))) if bytewise else []
    assert outcome(stream, cuts, len(BLOCK)) == ([Event("ok"), Event("x" * 9)], False)


@pytest.mark.parametrize("bytewise", [False, True])
def test_one_byte_over_the_limit_raises(bytewise: bool) -> None:
    stream = b"data: ok\n\n" + BLOCK + b"\n"
    cuts = list(range(len(stream))) if bytewise else []
    assert outcome(stream, cuts, len(BLOCK) - 1) == ([Event("ok")], True)


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    # Five two-byte characters: 17 bytes of block, 6 characters of value.
    stream = "data: ééééé\n\n".encode()
    assert outcome(stream, [], 16) == ([], True)
    assert outcome(stream, [], 17) == ([Event("ééééé")], False)


def test_a_partial_line_on_top_of_buffered_lines_counts_both() -> None:
    decoder = Decoder(max_event_bytes=20)
    assert decoder.feed(b"data: abc\n") == []  # 10 bytes of the block
    assert decoder.feed(b"data: ab") == []  # 8 more, still partial: 18
    assert decoder.feed(b"cd") == []  # exactly 20
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(b"e")  # 21
    assert info.value.size == 21


def test_the_size_restarts_after_a_split_line_completes() -> None:
    decoder = Decoder(max_event_bytes=20)
    events: list[Event] = []
    for _ in range(1000):  # 16 000 bytes of events, each within the limit, each line split
        events += decoder.feed(b"data: 0123456")
        events += decoder.feed(b"789\n\n")
    assert len(events) == 1000 and decoder.pending_bytes == 0


@pytest.mark.parametrize("cuts", [[], [9], [10], [2, 10], [2, 9], [7, 9]])
def test_bytes_after_the_last_line_end_of_a_chunk_count_once(cuts: list[int]) -> None:
    stream = b"data: a\nxyz\n\n"  # a block of 12 bytes: "data: a" LF "xyz" LF
    assert outcome(stream, cuts, 12) == ([Event("a")], False)
    assert outcome(stream, cuts, 11) == ([], True)


@pytest.mark.parametrize("cut", [8, 9, 10])
def test_a_line_cut_just_after_a_line_end_loses_no_byte(cut: int) -> None:
    stream = b"data: a\ndata: b\n\n"
    assert outcome(stream, [cut], 100) == ([Event("a\nb")], False)


@pytest.mark.parametrize(
    "before",
    [
        b"",
        b"\n",
        b"\n\n",
        b"data: p\n\n",
        b"\n\ndata: p\n\n",
        b": c\n\n\n",
        # Chunks longer than the limit, whose blocks each fit.
        b"data: p\n\ndata: q\n\n",
        b": " + b"c" * 17 + b"\n\n",
    ],
)
def test_only_the_open_block_counts_whatever_ended_before_it(before: bytes) -> None:
    decoder = Decoder(max_event_bytes=20)
    decoder.feed(before + b"data: a\n")  # the open block: 8 bytes
    assert decoder.feed(b"x" * 12) == []  # 20: at the limit
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(b"x")
    assert info.value.size == 21


@pytest.mark.parametrize("limit, size", [(20, 25), (25, 42), (42, 59)])
def test_the_error_gives_the_block_size_through_the_line_that_went_over(
    limit: int, size: int
) -> None:
    # Lines of 17, 8 and 17 bytes, then 17 again: the block grows 17, 25, 42, 59.
    long, short = b"data: 0123456789\n", b"data: b\n"
    with pytest.raises(EventTooLarge) as info:
        Decoder(max_event_bytes=limit).feed(b"data: a\n\n" + long + short + long + long + b"\n")
    assert (info.value.size, info.value.events) == (size, [Event("a")])


def test_an_oversized_partial_line_keeps_the_events_of_its_chunk() -> None:
    with pytest.raises(EventTooLarge) as info:
        Decoder(max_event_bytes=20).feed(b"data: a\n\n" + b"x" * 30)
    assert info.value.events == [Event("a")]


def test_comments_count_towards_the_block() -> None:
    assert outcome(b": " + b"c" * 20 + b"\ndata: a\n\n", [], 20) == ([], True)
    assert outcome(b": " + b"c" * 20 + b"\n\ndata: a\n\n", [], 23) == ([Event("a")], False)


@settings(max_examples=300, deadline=None)
@given(sse_stream(), st.lists(st.integers(0, 10_000), max_size=12), st.integers(1, 48))
def test_any_split_gives_the_same_size_decision(
    stream: bytes, cuts: list[int], limit: int
) -> None:
    assert outcome(stream, cuts, limit) == outcome(stream, [], limit)


@settings(max_examples=100, deadline=None)
@given(sse_stream(), st.integers(1, 48))
def test_byte_by_byte_gives_the_same_size_decision(stream: bytes, limit: int) -> None:
    assert outcome(stream, list(range(len(stream))), limit) == outcome(stream, [], limit)


# --- retry: fields of any length ----------------------------------------------------------------


@pytest.mark.parametrize("digits", [20, 400, 5000, 100_000])
def test_a_retry_of_many_digits_saturates_and_keeps_the_chunk(digits: int) -> None:
    decoder = Decoder()
    events = decoder.feed(b"data: a\n\nretry: " + b"9" * digits + b"\ndata: b\n\n")
    assert pairs(events) == [("message", "a"), ("message", "b")]
    assert decoder.retry == RETRY_MAX_MS


def test_leading_zeros_of_a_retry_do_not_saturate() -> None:
    decoder = Decoder()
    decoder.feed(b"retry: " + b"0" * 5000 + b"1500\n\n")
    assert decoder.retry == 1500


def test_a_retry_just_below_saturation_is_kept() -> None:
    decoder = Decoder()
    decoder.feed(b"retry: %d\n\n" % (RETRY_MAX_MS - 1))
    assert decoder.retry == RETRY_MAX_MS - 1


# The fast path of the usual Lens frame (``id: x`` then ``data: y``) against the per-line
# rules: fed byte by byte no block arrives whole, so every line takes the general loop.
_value = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                 max_size=8)
_lens_block = st.one_of(
    st.builds(lambda i, d: f"id: {i}\ndata: {d}\n\n", _value, _value),
    st.builds(lambda i, d: f"id: {i}\x00\ndata: {d}\n\n", _value, _value),
    st.builds(lambda i, d: f"id:{i}\ndata: {d}\n\n", _value, _value),
    st.builds(lambda i, d: f"id: {i}\nevent: t\ndata: {d}\n\n", _value, _value),
    st.builds(lambda d: f"data: {d}\n\n", _value),
    st.builds(lambda i: f"id: {i}\n\n", _value),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_lens_block, max_size=8))
def test_the_usual_lens_frame_decodes_as_the_per_line_rules_say(blocks: list[str]) -> None:
    stream = "".join(blocks).encode()
    assert feed_all([stream]) == feed_all([stream[i : i + 1] for i in range(len(stream))])


# --- the documented constants, at their edges ---------------------------------------------------


def test_the_default_limit_is_16_mib() -> None:
    decoder = Decoder()
    assert decoder.feed(b"x" * (16 * 2**20)) == []  # an unfinished line exactly at the limit
    with pytest.raises(EventTooLarge) as info:
        decoder.feed(b"x")
    assert (info.value.limit, info.value.size) == (16 * 2**20, 16 * 2**20 + 1)


def test_the_smallest_limit_is_one_byte() -> None:
    decoder = Decoder(max_event_bytes=1)
    assert decoder.feed(b"\n\n") == []  # blank lines end empty blocks: nothing to dispatch
    with pytest.raises(EventTooLarge):
        decoder.feed(b"d\n")


def test_a_retry_saturates_at_about_31_years() -> None:
    decoder = Decoder()
    decoder.feed(b"retry: 999999999999\n\n")  # 12 digits: kept as it is
    assert decoder.retry == 999_999_999_999
    decoder.feed(b"retry: 1000000000001\n\n")
    assert decoder.retry == 10**12 == RETRY_MAX_MS


def test_an_event_type_does_not_carry_over_to_the_next_block() -> None:
    # The second block has two head lines and no event: line: its type is "message", not the
    # type the block before it named.
    events, _, _ = feed_all([b"event: a\ndata: x\n\nid: 1\nid: 2\ndata: y\n\n"])
    assert [(e.type, e.data, e.id) for e in events] == [("a", "x", None), ("message", "y", "2")]


# --- a run of Lens result frames, decoded whole --------------------------------------------------
# A run of ``id: x`` / ``data: y`` blocks becomes its events in whole-run string operations
# (``Decoder._frames``), which tells the lines apart by sorting them between ``"id: "`` and
# ``"id:!"``, ``"data: "`` and ``"data:!"``. The lines below sit on and around those bounds;
# fed byte by byte, no run reaches that path, so the per-line rules decide.

_id_line = st.one_of(
    _value.map(lambda i: f"id: {i}"),
    st.sampled_from(["id:", "id: ", "id:  7", "id:!7", "id:\x1f7", "id:7", "ic: 7", "ie: 7",
                     "id", "id: 7\x00", "", ":id: 7", "event: id", "id: \U0001f600"]),
)
_data_line = st.one_of(
    _value.map(lambda d: f"data: {d}"),
    st.sampled_from(["data:", "data: ", "data:  x", "data:!x", "data:\x1fx", "data:x", "datb: x",
                     "dat", "data", "data: x\x00", "", "data: \U0001f600", "id: 7", "retry: 9"]),
)


@st.composite
def _frame_run(draw: st.DrawFn) -> bytes:
    blocks = []
    for n in range(draw(st.integers(0, 12))):
        odd = draw(st.integers(0, 9)) == 0  # mostly the usual frame, now and then not
        head = draw(_id_line) if odd else f"id: {n}"
        body = draw(_data_line) if odd else f"data: {draw(_value)}"
        # Extra lines; three of them keep the lines in step with the id/data/blank pattern.
        extra = draw(st.sampled_from(["", "", "", "\nevent: t", "\n:c", "\ndata: more",
                                      "\n:c\nid: 9\ndata: z", "\nevent: t\nid: 9\ndata: z"]))
        blocks.append(f"{head}\n{body}{extra}\n\n")
    if draw(st.booleans()):
        blocks.insert(0, draw(st.sampled_from(["\n", "data: x\n\n", "id: 3\n", ":c\n"])))
    stream = "".join(blocks)
    if draw(st.booleans()):
        stream = stream.replace("\n", draw(st.sampled_from(["\r\n", "\r"])))
    return stream.encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(_frame_run(), st.lists(st.integers(0, 10_000), max_size=6))
def test_a_run_of_frames_decodes_as_the_per_line_rules_say(
    stream: bytes, cuts: list[int]
) -> None:
    bytewise = feed_all([stream[i : i + 1] for i in range(len(stream))])
    assert feed_all([stream]) == bytewise
    assert feed_all(split_at(stream, cuts)) == bytewise
    assert [(e.type, e.data, e.last_event_id) for e in bytewise[0]] == reference_decode(stream)


def test_a_run_of_frames_takes_the_whole_run_path() -> None:
    run = "".join(f"id: {n}\ndata: {{\"n\": {n}}}\n\n" for n in range(50))
    found = Decoder()._frames(run + "id: 50\n")
    assert found is not None
    events, rest = found
    assert events == [Event(f'{{"n": {n}}}', "message", str(n), str(n)) for n in range(50)]
    assert rest == "id: 50\n"


@pytest.mark.parametrize(
    "odd",
    ["id:!7\ndata: x", "id:7\ndata: x", "id\ndata: x", "id: 7\x00\ndata: x", "id: 7\ndata:!x",
     "id: 7\ndata:x", "id: 7\ndata", "id: 7\ndatb: x", "id: 7\ndata: x\ndata: y",
     "id: 7\nevent: t\ndata: x", "data: x", "id: 7", "id: 7\ndata: x\n:c\nid: 8\ndata: y"],
)
def test_a_block_of_another_shape_leaves_the_run_to_the_per_line_rules(odd: str) -> None:
    run = f"id: 1\ndata: a\n\n{odd}\n\nid: 2\ndata: b\n\n"
    assert Decoder()._frames(run) is None
    assert feed_all([run.encode()]) == feed_all([bytes([b]) for b in run.encode()])
