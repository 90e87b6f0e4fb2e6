"""A pure, incremental decoder for ``text/event-stream``.

It follows the WHATWG HTML standard, "Interpreting an event stream", to the letter:

- one leading UTF-8 byte order mark is stripped, also when it arrives split across chunks;
- bytes are decoded as UTF-8 with U+FFFD replacing invalid sequences (never raising), and
  characters split across chunks decode right;
- CR, LF and CRLF end lines (and only those: U+2028, NEL, VT, FF are data); a CRLF split across
  two chunks counts as one line end, and a CR ends its line at once;
- ``field: value`` with one leading space of the value removed; a line without a colon is a field
  with an empty value; lines starting with a colon are comments;
- ``data`` lines are joined with ``"\\n"``; a block without ``data`` dispatches nothing but still
  commits the last event id; ``id`` values containing NUL are ignored; an empty ``id`` resets the
  last event id; ``retry`` is taken only when it is all ASCII digits; an empty ``event`` is
  ``"message"``; unknown fields are ignored;
- an event not ended by a blank line when the stream ends is discarded, never dispatched.

The decoder works in linear time: it scans each chunk once, joins the parts of a long line once
when the line ends, and decodes each run of complete lines in one call. A run made only of
Lens result frames (``id: x`` then ``data: y``, each block two lines) becomes its events in a
few whole-run string operations, no Python loop per event; other blocks of the common shape
(``[id: x][event: t]data: y``, one line each) become events without the per-line loop; every
other block goes through the loop that transcribes the spec.

Memory is bounded by ``max_event_bytes``, one rule in bytes whatever the chunking: the bytes of
one event block as received, that is every line since the blank line that ended the previous
event (field names, comments and unknown fields included, each line end counting one byte), up
to the blank line that dispatches it. A block that would grow past it raises
:class:`EventTooLarge` before it is buffered, whether its lines arrive whole or split: any split
of a stream gives the same events and the same decision. A ``retry:`` of any length is parsed
without building a large integer: values above :data:`RETRY_MAX_MS` saturate.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter

from rxlens.errors import EventTooLarge
from rxlens.sse._models import Event

_BOM = b"\xef\xbb\xbf"
_new_event = tuple.__new__
# The value of an ``id: x`` line and of a ``data: y`` line (C calls, for ``map``).
_after_id = itemgetter(slice(4, None))
_after_data = itemgetter(slice(6, None))
_DEFAULT_MAX_EVENT_BYTES = 16 * 2**20
#: The largest ``retry:`` the decoder reports (ms, about 31 years): longer values saturate. A
#: field of a few thousand digits is legal SSE; building the integer would raise (Python's
#: int-digits limit) or overflow any float computed from it, and every retry policy caps far
#: below this anyway.
RETRY_MAX_MS = 10**12
_RETRY_MAX_DIGITS = len(str(RETRY_MAX_MS))


def _retry_ms(digits: str) -> int:
    """The value of an all-digits ``retry:`` field, saturated at :data:`RETRY_MAX_MS`."""
    digits = digits.lstrip("0")
    if len(digits) > _RETRY_MAX_DIGITS:
        return RETRY_MAX_MS
    return min(int(digits or "0"), RETRY_MAX_MS)


class Decoder:
    """Turns the bytes of one SSE response into :class:`Event` values.

    Feed it every chunk as it arrives with :meth:`feed`; each call returns the events that chunk
    completed. Call :meth:`close` at the end of the stream: it discards any unfinished event, as
    the spec requires, and returns the (always empty) list of events left to dispatch.

    ``last_event_id`` seeds the stream's last event id (for a resumed connection, the id that was
    sent as ``Last-Event-ID``). Use one decoder per HTTP response.
    """

    __slots__ = (
        "_block_size",
        "_bom_state",
        "_closed",
        "_data",
        "_event_type",
        "_id_buffer",
        "_id_in_block",
        "_last_event_id",
        "_max",
        "_pending",
        "_pending_size",
        "_retry",
        "_skip_lf",
    )

    def __init__(
        self, last_event_id: str = "", max_event_bytes: int = _DEFAULT_MAX_EVENT_BYTES
    ) -> None:
        if max_event_bytes <= 0:
            raise ValueError("max_event_bytes must be positive")
        self._max = max_event_bytes
        self._last_event_id = last_event_id
        self._id_buffer = last_event_id
        self._id_in_block = False
        self._retry: int | None = None
        self._event_type = ""
        self._data: list[str] = []
        # Bytes of the complete lines of the current block (reset by a blank line).
        self._block_size = 0
        # Bytes of an unfinished line, kept as a list of parts so that a long line costs one
        # join when it ends, not a copy per chunk.
        self._pending: list[bytes] = []
        self._pending_size = 0
        # The start of the stream, until we know whether it begins with a BOM (b"" = undecided,
        # None = decided).
        self._bom_state: bytes | None = b""
        # The previous chunk ended with CR: an LF starting this chunk belongs to that CRLF.
        self._skip_lf = False
        self._closed = False

    # -- public state -----------------------------------------------------------------------

    @property
    def last_event_id(self) -> str:
        """The stream's last event id: what to send as ``Last-Event-ID`` when reconnecting."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """Milliseconds from the last valid ``retry:`` field, or ``None`` before any."""
        return self._retry

    @property
    def pending_bytes(self) -> int:
        """How many bytes of an unfinished line are buffered (discarded by :meth:`close`)."""
        return self._pending_size

    @property
    def in_event(self) -> bool:
        """Whether an event has started (fields seen, or a partial line) but not been dispatched."""
        return bool(self._pending_size or self._data or self._event_type or self._id_in_block)

    # -- feeding ----------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[Event]:
        """Decode one chunk; return the events it completed, in order."""
        if self._closed:
            raise ValueError("feed() after close()")
        if not chunk:
            return []
        if self._bom_state is not None:
            head = self._bom_state + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._bom_state = head
                return []
            self._bom_state = None
            chunk = head[3:] if head.startswith(_BOM) else head
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        end = chunk.rfind(b"\n")
        if end < 0:
            self._keep_partial(chunk)
            return []
        if self._pending:
            self._pending.append(chunk[: end + 1])
            complete = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        else:
            complete = chunk if end == len(chunk) - 1 else chunk[: end + 1]
        over = self._measure(complete)
        if over is not None:
            at, size = over
            error = EventTooLarge(self._max, size)
            # The events completed before the oversized block are still delivered.
            error.events = self._lines(complete[:at]) if at else []
            raise error
        events = self._lines(complete)
        if end < len(chunk) - 1:
            try:
                self._keep_partial(chunk[end + 1 :])
            except EventTooLarge as error:
                error.events = events
                raise
        return events

    def close(self) -> list[Event]:
        """End of stream: discard any unfinished event (the spec never dispatches one)."""
        self._closed = True
        self._pending.clear()
        self._pending_size = 0
        self._data.clear()
        self._block_size = 0
        self._event_type = ""
        self._id_in_block = False
        return []

    # -- internals --------------------------------------------------------------------------

    def _keep_partial(self, part: bytes) -> None:
        size = self._pending_size + len(part)
        if self._block_size + size > self._max:
            raise EventTooLarge(self._max, self._block_size + size)
        self._pending.append(part)
        self._pending_size = size

    def _measure(self, complete: bytes) -> tuple[int, int] | None:
        """Count the block bytes of ``complete`` (whole lines, ending with LF).

        Returns ``(offset, size)`` of the first line that takes its block past the limit, or
        None after updating the size of the block still open. ``complete`` always starts at a
        line start, so an LF there, or the second LF of any ``LF LF``, is a blank line.
        """
        limit = self._max
        size = self._block_size
        n = len(complete)
        if size + n <= limit:
            # The common case: the whole run fits, so no block in it can be over the limit.
            blank = complete.rfind(b"\n\n")
            if blank >= 0:
                self._block_size = n - blank - 2
            elif complete[0] == 0x0A:
                self._block_size = n - 1
            else:
                self._block_size = size + n
            return None
        pos = 0
        while pos < n:
            if complete[pos] == 0x0A:  # a blank line: the block ends
                size = 0
                pos += 1
                continue
            stop = complete.find(b"\n\n", pos)
            block_end = n if stop < 0 else stop + 1
            if size + block_end - pos > limit:
                # Some line of this block goes over: find it, line by line.
                line = pos
                while True:
                    nl = complete.index(b"\n", line)
                    size += nl + 1 - line
                    if size > limit:
                        return line, size
                    line = nl + 1
            size += block_end - pos
            pos = block_end
        self._block_size = size
        return None

    def _lines(self, complete: bytes) -> list[Event]:
        # ``complete`` ends with LF. UTF-8 never uses the bytes of CR or LF inside a multi-byte
        # sequence, so decoding a run of whole lines at once equals decoding line by line.
        text = complete.decode("utf-8", "replace")
        events: list[Event] = []
        if self._data or self._event_type or self._id_in_block:
            # The event in progress (a read ends inside a frame more often than not) ends at
            # the first blank line, by the per-line rules; the frames after it start clean.
            first = text.find("\n\n")
            if first >= 0:
                self._general([*text[:first].split("\n"), ""], events)
                text = text[first + 2 :]
        frames = None
        if text[:4] == "id: " and not (self._data or self._event_type or self._id_in_block):
            frames = self._frames(text)
        if frames is not None:
            events += frames[0]
            tail = frames[1]
            blocks: list[str] = []
        else:
            # Split into blocks, each followed by a blank line; the last piece is the lines of
            # an event not finished yet ("" when the text ends with a blank line).
            blocks = text.split("\n\n")
            tail = blocks.pop()
        if blocks:
            append = events.append
            general = self._general
            id_buffer = self._id_buffer
            # The first block continues the previous call's event when one is in progress.
            clean = not (self._data or self._event_type or self._id_in_block)
            for block in blocks:
                # The fast path: a block of the common shape, ``[id: x\n][event: t\n]data: y``,
                # in a clean state, makes one event without the per-line loop. Anything else
                # (several data lines, comments, retry, "data:" without a space, NUL in an id)
                # takes the general loop, which is the spec. Sizes were checked in bytes before
                # decoding (``_measure``).
                if clean:
                    nl = block.rfind("\n")
                    if nl < 0:
                        if block[:6] == "data: ":
                            append(_new_event(Event, (block[6:], "message", id_buffer, None)))
                            continue
                    elif block[nl + 1 : nl + 7] == "data: ":
                        # The usual Lens frame, ``id: x\ndata: y``: its one head line read
                        # without the split and the loop below (which give the same event).
                        if block[:4] == "id: " and block.find("\n") == nl:
                            head_id = block[4:nl]
                            if "\x00" not in head_id:
                                id_buffer = head_id
                                append(
                                    _new_event(
                                        Event, (block[nl + 7 :], "message", head_id, head_id)
                                    )
                                )
                                continue
                        event_id: str | None = None
                        event_type = "message"
                        for line in block[:nl].split("\n"):
                            if line[:4] == "id: " and "\x00" not in line:
                                event_id = line[4:]
                            elif line[:7] == "event: ":
                                event_type = line[7:] or "message"
                            else:
                                break
                        else:
                            if event_id is not None:
                                id_buffer = event_id
                            append(
                                _new_event(
                                    Event, (block[nl + 7 :], event_type, id_buffer, event_id)
                                )
                            )
                            continue
                    self._id_buffer = id_buffer
                    self._last_event_id = id_buffer
                    general([*block.split("\n"), ""], events)
                    id_buffer = self._id_buffer
                else:
                    general([*block.split("\n"), ""], events)
                    id_buffer = self._id_buffer
                    clean = True  # the blank line after the block ended any event
            self._id_buffer = id_buffer
            self._last_event_id = id_buffer
        if tail:
            lines = tail.split("\n")
            lines.pop()  # the empty string after the final LF
            self._general(lines, events)
        return events

    def _frames(self, text: str) -> tuple[list[Event], str] | None:
        """The events of ``text`` up to its last blank line when every block there is exactly
        ``id: x`` then ``data: y`` (a busy Lens stream), and the text after it; else None.

        Called in a clean state (no event in progress) on text that starts at a line start.
        Such a block is one event ``(y, "message", x, x)`` that makes ``x`` the last event id,
        which is what the per-line rules give it (``x`` holds no NUL: text with a NUL anywhere
        is left to them). The test and the events are whole-run string operations: split into
        lines, then every third line must be an ``id: `` line, the next a ``data: `` line and
        the next blank. A line starts with ``id: `` exactly when it sorts between ``"id: "``
        and ``"id:!"`` (``"!"`` follows the space), so ``min`` and ``max`` of those lines
        check them all in C; likewise ``"data: "`` and ``"data:!"``, and a blank line is the
        only string no greater than ``""``.
        """
        end = text.rfind("\n\n") + 2
        if end < 2:
            return None
        run = text if end == len(text) else text[:end]
        if "\x00" in run:
            return None
        lines = run.split("\n")
        lines.pop()  # the empty string after the last line end
        if len(lines) % 3:  # (also: no line in the third place, whose max() would raise)
            return None
        ids = lines[::3]
        data = lines[1::3]
        if (
            max(lines[2::3])
            or min(ids) < "id: "
            or max(ids) >= "id:!"
            or min(data) < "data: "
            or max(data) >= "data:!"
        ):
            return None
        ids = list(map(_after_id, ids))
        events = list(
            map(
                _new_event,
                repeat(Event),
                zip(map(_after_data, data), repeat("message"), ids, ids),
            )
        )
        last = ids[-1]
        self._id_buffer = last
        self._last_event_id = last
        return events, text[end:]

    def _general(self, lines: list[str], events: list[Event]) -> None:
        """The spec's per-line rules, for any lines; dispatched events go to ``events``."""
        append = events.append
        data = self._data
        # The per-line loop is the decoder's hot path: state lives in locals and is written
        # back once, in ``finally`` so that the decoder stays consistent whatever happens.
        event_type = self._event_type
        id_buffer = self._id_buffer
        id_in_block = self._id_in_block
        try:
            for line in lines:
                if not line:
                    # Dispatch: commit the id; nothing more for a block without data.
                    if data:
                        append(
                            _new_event(
                                Event,
                                (
                                    "\n".join(data),
                                    event_type or "message",
                                    id_buffer,
                                    id_buffer if id_in_block else None,
                                ),
                            )
                        )
                        data.clear()
                    self._last_event_id = id_buffer
                    event_type = ""
                    id_in_block = False
                    continue
                name, colon, value = line.partition(":")
                if colon and value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event_type = value
                elif name == "id":
                    if "\x00" not in value:
                        id_buffer = value
                        id_in_block = True
                elif name == "retry" and value.isascii() and value.isdigit():
                    self._retry = _retry_ms(value)
                # Anything else, comments (empty name) included, is ignored.
        finally:
            self._event_type = event_type
            self._id_buffer = id_buffer
            self._id_in_block = id_in_block
