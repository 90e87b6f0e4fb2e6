"""Every error rxlens raises.

All of them subclass :class:`RxLensError`, so ``except RxLensError`` catches anything the library
itself signals. Each carries ``retryable``: whether a reconnect may cure it. The retry policy's
default predicate reads that flag, so the taxonomy below *is* the retry rule.

Messages say what happened and what to check. None of them ever contains an API key: errors are
built from status codes, URLs without credentials and response bodies that the code reading them
has masked (:func:`rxlens._text.mask_secrets`) before they are cut here; no error keeps the
request (and so its headers) in its ``__cause__`` or ``__context__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from rxlens._text import truncate

#: How much of an error response body an error keeps (characters).
BODY_LIMIT = 2048


def _body(text: str | None, limit: int = BODY_LIMIT) -> str | None:
    return None if text is None else truncate(text, limit)


_E = TypeVar("_E", bound=BaseException)


def mark_downstream(error: _E) -> _E:
    """Mark an exception raised by a subscriber's own code (not by rxlens, not by the network),
    so that nothing retries it and it reaches the subscriber unchanged. Returns ``error``."""
    try:
        error._rxlens_downstream = True  # type: ignore[attr-defined]
    except AttributeError:
        pass  # an exception type with __slots__: the retry predicate's type check still holds
    return error


def is_downstream(error: BaseException) -> bool:
    """Whether ``error`` was raised by a subscriber's own code (see :func:`mark_downstream`)."""
    return bool(getattr(error, "_rxlens_downstream", False))


class RxLensError(Exception):
    """Base class of every error rxlens raises."""

    #: Whether reconnecting may cure the error (read by :class:`rxlens.RetryPolicy`).
    retryable: bool = False

    #: The server's ``Retry-After`` hint, in seconds, when it sent one.
    retry_after: float | None = None

    #: The stream's reconnection time from its last valid ``retry:`` field (ms), if any.
    retry_ms: int | None = None


# --- decoding --------------------------------------------------------------------------------


class DecodeError(RxLensError, ValueError):
    """The byte stream cannot be decoded as server-sent events."""


class EventTooLarge(DecodeError):
    """One event grew past the decoder's ``max_event_bytes`` limit.

    Raised before memory grows past the limit. The stream cannot continue in step (the rest of
    the oversized event is unknown), so this is not retried.
    """

    def __init__(self, limit: int, size: int) -> None:
        self.limit = limit
        self.size = size
        #: Events completed in the same chunk before the oversized one, still to be delivered.
        self.events: list[Any] = []
        super().__init__(
            f"an event exceeded max_event_bytes={limit} (at least {size} bytes buffered); "
            "raise max_event_bytes if such large events are expected"
        )


class EventIdTooLong(DecodeError):
    """An event's ``id`` is longer than :func:`rxlens.operators.resume`'s ``max_id_length``.

    ``resume`` remembers ids to recognise replays and the connection sends the last one back as
    ``Last-Event-ID``: an unbounded id would grow both without limit. Not retried: the server
    would send the same id again. The message gives the id's length, never its text.
    """

    def __init__(self, limit: int, length: int) -> None:
        self.limit = limit
        self.length = length
        super().__init__(
            f"an event id of {length} characters exceeds max_id_length={limit}; raise "
            "resume's max_id_length if such ids are expected"
        )


class MalformedEventError(DecodeError):
    """A frame's payload is not a valid Lens event (raised with ``on_malformed="raise"``)."""

    def __init__(self, message: str, raw: str, errors: object = None) -> None:
        self.raw = raw
        self.errors = errors
        super().__init__(f"{message}: {_body(raw, 200)!r}")


# --- recordings ------------------------------------------------------------------------------


class RecordedSessionError(RxLensError):
    """A session failure read back from a recording: only its type name and message survive.

    The ``error`` of a :class:`~rxlens.events.SessionFailed` that :func:`rxlens.replay` rebuilt.
    """

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        self.message = message
        super().__init__(f"{error_type}: {message}")


# --- transport -------------------------------------------------------------------------------


class TransportError(RxLensError, ConnectionError):
    """The connection failed or broke: refused, reset, timed out, closed mid-stream.

    Retryable. ``retry_after`` holds the server's ``retry:`` hint in seconds, if it sent one.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StreamClosed(TransportError):
    """The server closed the stream (cleanly, at an event boundary or not). Retryable.

    ``clean`` says whether it ended at an event boundary (no unfinished event discarded):
    :class:`rxlens.RetryPolicy` does not count a clean end after events as a failure.
    """

    #: Whether the stream ended at an event boundary.
    clean: bool = False


class ReadTimeout(TransportError):
    """No bytes arrived within the read timeout. Retryable."""


class HTTPStatusError(RxLensError):
    """The server answered with a status other than 200 (or 204).

    ``status`` is the HTTP status, ``body`` the start of the response body (never the request's
    headers, so never the key), ``retry_after`` the parsed ``Retry-After`` header in seconds.
    """

    def __init__(
        self,
        status: int,
        url: str,
        body: str | None = None,
        *,
        retry_after: float | None = None,
        hint: str = "",
    ) -> None:
        self.status = status
        self.url = url
        self.body = _body(body)
        self.retry_after = retry_after
        self.retryable = status in (408, 429) or status >= 500
        message = f"HTTP {status} from {url}"
        if hint:
            message += f": {hint}"
        if self.body:
            message += f" (body: {_body(self.body, 300)})"
        super().__init__(message)


class AuthenticationError(HTTPStatusError):
    """401 or 403: the API key is missing, wrong, or not allowed this resource. Not retried."""

    def __init__(self, status: int, url: str, body: str | None = None, **kw: object) -> None:
        super().__init__(
            status,
            url,
            body,
            hint="check the API key (ATAI_API_KEY or api_key=) and that it may read this session",
        )


class NotFound(HTTPStatusError):
    """404: the session (or route) does not exist. Not retried."""

    def __init__(self, status: int, url: str, body: str | None = None, **kw: object) -> None:
        super().__init__(
            status, url, body, hint="check the session id and the base URL (/api or /v0.5)"
        )


class ContentTypeError(RxLensError):
    """A 200 response that is not ``text/event-stream``: a proxy page, a JSON error, a wrong URL."""

    def __init__(self, content_type: str, url: str, body: str | None = None) -> None:
        self.content_type = content_type
        self.url = url
        self.body = _body(body)
        message = (
            f"expected Content-Type text/event-stream from {url}, got {content_type or 'none'!r}; "
            "check the URL points at the SSE consumer endpoint"
        )
        if self.body:
            message += f" (body: {_body(self.body, 300)})"
        super().__init__(message)


class ContentEncodingError(ContentTypeError):
    """The server compressed the stream although rxlens asked for ``identity``. Not retried.

    rxlens never decodes a compressed event stream: a compressor holds frames back, and a
    small compressed body can inflate to gigabytes. The body is not read.
    """

    def __init__(self, encoding: str, content_type: str, url: str) -> None:
        self.encoding = encoding
        self.content_type = content_type
        self.url = url
        self.body = None
        RxLensError.__init__(
            self,
            f"the server at {url} sent the event stream compressed (Content-Encoding: "
            f"{encoding}) although rxlens asked for none (Accept-Encoding: identity); "
            "check for a proxy that compresses responses",
        )


# --- local failures --------------------------------------------------------------------------


class LocalError(RxLensError):
    """rxlens failed on this machine, not on the network: a request it cannot build, or a bug.

    Never retried: reconnecting would fail the same way. ``__cause__`` is the original
    exception when there is one.
    """


class UnsendableEventId(LocalError, ValueError):
    """An event id that cannot go back to the server as ``Last-Event-ID`` unchanged.

    Ids are sent as UTF-8, so any text goes, except an id with CR, LF or NUL (no header can
    carry them) or with leading white space (HTTP strips it, so the server would get another
    id). ``event_id`` is the id. Not retried: every reconnect would send the same id.
    """

    def __init__(self, event_id: str, reason: str) -> None:
        self.event_id = event_id
        super().__init__(
            f"cannot send the event id {event_id[:80]!r} as Last-Event-ID: {reason}"
        )


# --- retry -----------------------------------------------------------------------------------


class RetriesExhausted(RxLensError):
    """The retry policy gave up. ``last_error`` (also ``__cause__``) is the final failure."""

    def __init__(self, attempts: int, elapsed: float, last_error: BaseException) -> None:
        self.attempts = attempts
        self.elapsed = elapsed
        self.last_error = last_error
        super().__init__(
            f"gave up after {attempts} attempt(s) in {elapsed:.1f} s; last error: {last_error}"
        )


class HeartbeatTimeout(RxLensError, TimeoutError):
    """No frame of any kind arrived within ``seconds``. Retryable: the connection is presumed dead.

    ``last_frame_at`` is the scheduler time (seconds) of the last frame seen, or of the
    subscription when none arrived.
    """

    retryable = True

    def __init__(self, seconds: float, last_frame_at: float) -> None:
        self.seconds = seconds
        self.last_frame_at = last_frame_at
        super().__init__(
            f"no event for {seconds:g} s (last frame at t={last_frame_at:.3f}); "
            "the connection is presumed dead"
        )


class ClientClosed(RxLensError):
    """The :class:`rxlens.LensClient` that made the stream was closed (``close()``, or the end
    of its ``with`` block). Not retryable: a closed client opens no connection."""

    def __init__(self, what: str = "stream") -> None:
        super().__init__(f"the LensClient was closed: the {what} ended and is not reopened")


# --- the Lens API ----------------------------------------------------------------------------


class ConfigurationError(RxLensError, ValueError):
    """rxlens is missing a setting it needs (an API key, a base URL) or got a bad one."""


class LensAPIError(RxLensError):
    """The Lens API answered a request with an error.

    Built from every error body shape the API is known to use: ``{"errors": [{code, message,
    suggestion, error_uid}]}``, ``{"errors": ["text"]}``, ``{"detail": "..."}`` and
    ``{"type": "error", "message": "..."}``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        suggestion: str | None = None,
        error_uid: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.suggestion = suggestion
        self.error_uid = error_uid
        self.retryable = status in (408, 429) or status >= 500
        text = f"Lens API error {status}"
        if code:
            text += f" [{code}]"
        text += f": {message}"
        if suggestion:
            text += f" (suggestion: {suggestion})"
        if error_uid:
            text += f" [{error_uid}]"
        super().__init__(text)


class MailboxError(RxLensError):
    """The server answered a mailbox request with ``{"type": "error"}``. Not retried.

    ``reply_message`` is the start of the server's message (500 characters at most).
    """

    def __init__(self, reply: Mapping[str, Any]) -> None:
        message = reply.get("message")
        data = reply.get("event_data")
        if message is None and isinstance(data, Mapping):
            message = data.get("message")
        self.reply_message = str(message)[:500] if message is not None else ""
        super().__init__(f"the mailbox answered with an error: {self.reply_message}")


class ChannelError(RxLensError):
    """The lens does not write to the SSE consumer (it writes to the ``session.read`` mailbox)."""


# --- sinks and asyncio ------------------------------------------------------------------------


class CollectTimeout(RxLensError, TimeoutError):
    """:func:`rxlens.collect` hit its ``timeout`` before ``n`` items or completion.

    ``items`` holds what did arrive, so nothing collected is lost.
    """

    def __init__(self, timeout: float, items: list[Any], wanted: int | None) -> None:
        self.timeout = timeout
        self.items = items
        self.wanted = wanted
        goal = f"{wanted} items" if wanted is not None else "completion"
        super().__init__(
            f"waited {timeout:g} s for {goal}; got {len(items)} item(s) (see .items)"
        )


class MissingDependency(RxLensError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class EmptyStream(RxLensError, LookupError):
    """The stream completed without an item, so it has no last item to await."""


class FleetTimeout(RxLensError, TimeoutError):
    """``Fleet.wait`` ran out of time; ``pending`` names the sessions still reading."""

    def __init__(self, pending: list[str], timeout: float) -> None:
        self.pending = pending
        shown = ", ".join(pending[:5]) + (" ..." if len(pending) > 5 else "")
        super().__init__(f"{len(pending)} session(s) still reading after {timeout:g} s: {shown}")


# --- recordings --------------------------------------------------------------------------------


class RecordingError(RxLensError):
    """A recording cannot be written or read."""


class RecordingFormatError(RecordingError, ValueError):
    """A line of a recording is not a valid record (the message names the file and line).

    ``line`` is the line's number (from 1) when the error comes from reading a file.
    """

    line: int | None = None


class RecordingIOError(RecordingError, OSError):
    """A recording file cannot be opened, written or read."""


class HandOffOverflow(RxLensError, BufferError):
    """:func:`rxlens.operators.hand_off`'s queue was full (``on_full="error"``): the
    subscriber fell ``max_queue`` items behind its source. Not retried: a reconnect would fall
    behind again; ``max_queue`` is the queue's size."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        super().__init__(
            f"the subscriber fell {max_queue} items behind its source (hand_off max_queue); "
            'raise max_queue, or use on_full="drop_oldest" to keep the newest items'
        )
