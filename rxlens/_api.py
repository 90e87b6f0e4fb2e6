"""The Lens REST API around the stream: lenses, sessions, and a session context manager.

:class:`Lenses` and :class:`Sessions` are thin, synchronous wrappers of the JSON calls; each
takes a :class:`requests.Session`, the base URL (``.../api`` or ``.../v0.5``: both serve
``{base}/lens/...``) and a function returning the request headers (``Authorization: Bearer``),
called on every request so that a missing key is reported at the first call, not at
construction. :class:`LensSession` is ``with client.session(lens_id) as s:``.

Every failure is a :class:`~rxlens.errors.LensAPIError` (:func:`error_from_response` reads each
error body shape the API uses, including errors inside a ``200`` answer) or, when no answer
came, a :class:`~rxlens.errors.TransportError`. The API key never appears in either: messages
are built from the status and the body, and any echo of the key in a body is masked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

import requests

from rxlens.errors import BODY_LIMIT, LensAPIError, NotFound, RxLensError, TransportError

__all__ = [
    "ClientLike",
    "HeadersProvider",
    "LensSession",
    "Lenses",
    "Sessions",
    "error_from_response",
    "normalize_status",
]

logger = logging.getLogger("rxlens.api")

#: Returns the headers of a request (at least ``Authorization``); may raise
#: :class:`~rxlens.errors.ConfigurationError` when no key is configured.
HeadersProvider = Callable[[], Mapping[str, str]]

#: Seconds to wait for a connection and for an answer.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)

#: The largest answer rxlens reads (bytes, once decompressed); a longer one is refused.
MAX_RESPONSE_BYTES = 64 * 2**20

_KEY_HINT = "check the API key (ATAI_API_KEY or api_key=) and that it may use this resource"

# The only numeric statuses ever observed; others are left as sent.
_NUMERIC_STATUS = {"3": "RUNNING", "6": "FAILED"}


# --- errors ------------------------------------------------------------------------------------


def error_from_response(response: requests.Response) -> LensAPIError:
    """The :class:`~rxlens.errors.LensAPIError` an error response describes.

    Reads ``{"errors": [{code, message, suggestion, error_uid}, ...]}`` (code, suggestion and
    uid of the first; the messages of all), ``{"errors": ["text", ...]}``, ``{"detail": "..."}``
    (also a list of ``{"msg": ...}``), ``{"type": "error", "message": "..."}``, a bare
    ``{"message"}`` or ``{"error"}``, and any other body as (truncated) text. A 401 or 403
    without a suggestion gets one about the API key.
    """
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    found = _error_fields(body) if body is not None else None
    if found is None:
        text = (response.text or "").strip()
        message = _shorten(text) if text else (response.reason or "no error message")
        found = (message, None, None, None)
    message, code, suggestion, error_uid = found
    if suggestion is None and status in (401, 403):
        suggestion = _KEY_HINT
    key = _bearer_key(response)
    return LensAPIError(
        status,
        _mask(message, key) or "no error message",
        code=_mask(code, key),
        suggestion=_mask(suggestion, key),
        error_uid=error_uid,
    )


def _error_fields(body: Any) -> tuple[str, str | None, str | None, str | None] | None:
    """(message, code, suggestion, error_uid) from a known error body shape, else ``None``."""
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    if isinstance(errors, (str, dict)):
        errors = [errors]
    if isinstance(errors, list) and errors:
        messages: list[str] = []
        first: dict[str, Any] = {}
        for item in errors:
            if isinstance(item, dict):
                first = first or item
                messages.append(_text(item.get("message") or item.get("detail") or item))
            else:
                messages.append(_text(item))
        return (
            "; ".join(messages),
            _opt_text(first.get("code")),
            _opt_text(first.get("suggestion")),
            _opt_text(first.get("error_uid")),
        )
    if "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):
            parts = [_text(d.get("msg", d)) if isinstance(d, dict) else _text(d) for d in detail]
            return "; ".join(parts) or "no error message", None, None, None
        return _text(detail), None, None, None
    if body.get("type") == "error" or "error" in body or "message" in body:
        message = body.get("message", body.get("error"))
        return (
            _text(message) if message is not None else "error",
            _opt_text(body.get("code")),
            _opt_text(body.get("suggestion")),
            _opt_text(body.get("error_uid")),
        )
    return None


def _error_in_success(body: Any) -> bool:
    # The API reports some failures with a 200: a capacity error as {"errors": [...]}, an
    # unknown session of events/process as {"type": "error", "message": ...}.
    if not isinstance(body, dict):
        return False
    errors = body.get("errors")
    return (bool(errors) and isinstance(errors, list)) or body.get("type") == "error"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _shorten(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more]"


def _read_bounded(response: requests.Response, what: str) -> None:
    """Read the body into ``response.content``, refusing one past :data:`MAX_RESPONSE_BYTES`.

    A broken or hostile server may send an endless body (or a small compressed one that
    inflates to gigabytes): reading it whole would exhaust memory.
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(65536):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise LensAPIError(
                response.status_code,
                f"the answer to {what} is larger than {MAX_RESPONSE_BYTES} bytes; not read",
            )
        chunks.append(chunk)
    response._content = b"".join(chunks)


def _bearer_key(response: requests.Response) -> str | None:
    request = getattr(response, "request", None)
    header = request.headers.get("Authorization") if request is not None else None
    if not header:
        return None
    _, _, key = str(header).partition(" ")
    return key.strip() or None


def _mask(text: str | None, key: str | None) -> str | None:
    if text is None or not key:
        return text
    return text.replace(key, "***")


def normalize_status(status: object) -> str:
    """A session status as a bare upper-case name: ``"RUNNING"``, ``"FAILED"``, ``"DESTROYED"``.

    Accepts every spelling seen: ``"SESSION_STATUS_RUNNING"``,
    ``"LensSessionStatus.SESSION_STATUS_RUNNING"``, and the numeric ``"3"`` (running) and
    ``"6"`` (failed), as strings or integers. Anything else comes back upper-cased, as sent.
    """
    text = str(status).strip()
    if text in _NUMERIC_STATUS:
        return _NUMERIC_STATUS[text]
    text = text.rpartition(".")[2].upper()
    return text.removeprefix("SESSION_STATUS_")


# --- the calls -----------------------------------------------------------------------------------


class ClientLike(Protocol):
    """What :class:`Lenses` and :class:`Sessions` read from a client passed whole."""

    http: requests.Session
    base_url: str

    def auth_headers(self) -> Mapping[str, str]: ...


class _Api:
    """Shared request plumbing of :class:`Lenses` and :class:`Sessions`.

    Built either from the parts, ``(http, base_url, headers)``, or from a client that has
    ``http``, ``base_url``, ``auth_headers()`` (and optionally ``timeout``):
    ``Sessions(client)``.
    """

    def __init__(
        self,
        http: requests.Session | ClientLike,
        base_url: str | None = None,
        headers: HeadersProvider | None = None,
        *,
        timeout: float | tuple[float, float] | None = None,
    ) -> None:
        if isinstance(http, requests.Session):
            if base_url is None or headers is None:
                raise TypeError("base_url and headers are required with a requests.Session")
            self._http = http
            self._base = base_url.rstrip("/")
            self._headers = headers
        else:
            self._http = http.http
            self._base = (base_url or http.base_url).rstrip("/")
            self._headers = headers or http.auth_headers
            timeout = timeout if timeout is not None else getattr(http, "timeout", None)
        self._timeout = timeout if timeout is not None else DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base!r})"

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        url = self._base + path
        headers = {"Accept": "application/json", **self._headers()}
        try:
            response = self._http.request(
                method,
                url,
                json=body,
                params=params,
                headers=headers,
                timeout=self._timeout,
                stream=True,
            )
            with response:
                _read_bounded(response, f"{method} {path}")
        except requests.Timeout as exc:
            raise TransportError(
                f"{method} {url}: no answer in time ({type(exc).__name__})"
            ) from None
        except requests.RequestException as exc:
            # Only the class name: the exception's text may carry the prepared request.
            raise TransportError(f"{method} {url} failed: {type(exc).__name__}") from None
        with response:
            if response.status_code >= 400:
                raise error_from_response(response)
            if response.status_code == 204 or not response.content:
                return None
            try:
                payload = response.json()
            except ValueError:
                raise LensAPIError(
                    response.status_code,
                    f"the answer to {method} {path} is not JSON: "
                    f"{_shorten(response.text, BODY_LIMIT // 8)!r}",
                ) from None
            if _error_in_success(payload):
                raise error_from_response(response)
            return payload


class Lenses(_Api):
    """``client.lenses``: register, describe and delete lenses."""

    def register(self, lens_config: Mapping[str, Any]) -> dict[str, Any]:
        """Register a lens (``POST /lens/register``); the record, with its ``lens_id``."""
        return _object(self._call("POST", "/lens/register", body={"lens_config": lens_config}))

    def metadata(self, lens_id: str | None = None) -> list[dict[str, Any]]:
        """Lens records (``GET /lens/metadata``): all, or the one with ``lens_id``.

        Each has ``lens_id``, ``lens_name``, ``lens_status`` and ``lens_config``.
        """
        params = {"lens_id": lens_id} if lens_id else None
        return _records(self._call("GET", "/lens/metadata", params=params))

    def delete(self, lens_id: str) -> dict[str, Any]:
        """Delete a lens (``POST /lens/delete``)."""
        return _object(self._call("POST", "/lens/delete", body={"lens_id": lens_id}))


class Sessions(_Api):
    """``client.sessions``: create, inspect, drive and destroy lens sessions."""

    def create(self, lens_id: str, **extra: Any) -> dict[str, Any]:
        """Start a session of a lens (``POST /lens/sessions/create``).

        ``extra`` keys go into the request body beside ``lens_id``. The record has
        ``session_id`` (``lsn-...``), ``session_endpoint``, ``session_status``.
        The API's "Failed to allocate lens runner" (too many sessions) raises
        :class:`~rxlens.errors.LensAPIError` although it comes with a 200.
        """
        body = {**extra, "lens_id": lens_id}
        record = _object(self._call("POST", "/lens/sessions/create", body=body))
        if not isinstance(record.get("session_id"), str):
            raise LensAPIError(200, f"session create answered without a session_id: {record}")
        return record

    def destroy(self, session_id: str) -> dict[str, Any]:
        """End a session (``POST /lens/sessions/destroy``); open streams get ``sse.stream.end``."""
        return _object(
            self._call("POST", "/lens/sessions/destroy", body={"session_id": session_id})
        )

    def metadata(
        self,
        session_id: str | None = None,
        *,
        shard_index: int = -1,
        max_items_per_shard: int = -1,
    ) -> list[dict[str, Any]]:
        """Session records (``GET /lens/sessions/metadata``): all, or one ``session_id``.

        Each has ``session_id``, ``lens_id``, ``session_status``, ``session_endpoint``,
        ``session_duration_sec`` and ``num_outputs``.
        """
        params: dict[str, Any] = {
            "shard_index": shard_index,
            "max_items_per_shard": max_items_per_shard,
        }
        if session_id:
            params["session_id"] = session_id
        return _records(self._call("GET", "/lens/sessions/metadata", params=params))

    def process_event(
        self, session_id: str, event_type: str, event_data: Mapping[str, Any] | None = None
    ) -> Any:
        """Send a session event (``POST /lens/sessions/events/process``); its reply's payload.

        The API answers ``{"type": "<event_type>.response", "event_data": ...}``; this returns
        that ``event_data``. An ``{"type": "error", ...}`` answer raises
        :class:`~rxlens.errors.LensAPIError`.
        """
        event: dict[str, Any] = {"type": event_type, "event_data": dict(event_data or {})}
        reply = self._call(
            "POST",
            "/lens/sessions/events/process",
            body={"session_id": session_id, "event": event},
        )
        if isinstance(reply, dict) and "event_data" in reply:
            return reply["event_data"]
        return reply

    def record(self, session_id: str) -> dict[str, Any]:
        """The session's record, as ``session.status`` answers it."""
        return _object(self.process_event(session_id, "session.status"))

    def status(self, session_id: str) -> str:
        """The session's status as the server spells it (``"SESSION_STATUS_RUNNING"``,
        ``"LensSessionStatus.SESSION_STATUS_RUNNING"``, ``"3"``); compare through
        :func:`normalize_status`."""
        try:
            record = self.record(session_id)
        except LensAPIError as exc:
            # The API answers an unknown session inside a 200 ("Unknown session id: ...").
            if exc.status == 404 or "unknown session" in exc.message.lower():
                where = f"{self._base}/lens/sessions/events/process"
                raise NotFound(404, where, exc.message) from None
            raise
        status = record.get("session_status")
        if status is None:
            raise LensAPIError(200, f"session.status answered without a session_status: {record}")
        return str(status)

    def lens_config(self, session_id: str) -> dict[str, Any] | None:
        """The configuration of the session's lens, ``None`` when the API does not say.

        Reads the session's ``lens_id`` from its metadata, then that lens's ``lens_config``:
        it tells which channel the lens writes to (``output_streams``).
        """
        sessions = self.metadata(session_id)
        lens_id = sessions[0].get("lens_id") if sessions else None
        if not isinstance(lens_id, str) or not lens_id:
            return None
        lenses = self._call("GET", "/lens/metadata", params={"lens_id": lens_id})
        for lens in _records(lenses):
            if lens.get("lens_id") == lens_id and isinstance(lens.get("lens_config"), dict):
                return dict(lens["lens_config"])
        return None

    def update(self, session_id: str, session_config: Mapping[str, Any]) -> Any:
        """Change a running session's configuration (``session.update``)."""
        return self.process_event(
            session_id, "session.update", {"session_config": dict(session_config)}
        )


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise LensAPIError(200, f"expected a JSON object, got {_shorten(_text(value), 200)}")


def _records(value: Any) -> list[dict[str, Any]]:
    # A list of records; a lone record is accepted as a list of one.
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise LensAPIError(200, f"expected a list of records, got {_shorten(_text(value), 200)}")


# --- with client.session(lens_id) as s -----------------------------------------------------------


class LensSession:
    """A session that exists for the duration of a ``with`` block.

    ``__enter__`` creates it (``sessions.create(lens_id)``) and returns this object, with
    ``session_id`` and the creation ``record``; ``__exit__`` destroys it, also when the block
    raised (then a failure to destroy is logged and attached as a note to the block's error
    instead of replacing it). Leaving the block normally with a failed destroy raises that
    failure. Not reusable: one ``with`` per object.
    """

    def __init__(self, sessions: Sessions, lens_id: str) -> None:
        self.sessions = sessions
        self.lens_id = lens_id
        self.record: dict[str, Any] | None = None
        self._session_id: str | None = None
        self._used = False

    def __repr__(self) -> str:
        return f"LensSession(lens_id={self.lens_id!r}, session_id={self._session_id!r})"

    @property
    def session_id(self) -> str:
        """The id of the session (inside the ``with`` block)."""
        if self._session_id is None:
            raise RxLensError("the session exists only inside its `with` block")
        return self._session_id

    def __enter__(self) -> LensSession:
        if self._used:
            raise RxLensError("a LensSession is entered once; call client.session() again")
        self._used = True
        self.record = self.sessions.create(self.lens_id)
        self._session_id = str(self.record["session_id"])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session_id = self._session_id
        if session_id is None:
            return
        try:
            self.sessions.destroy(session_id)
        except RxLensError as failure:
            if exc is None:
                raise
            logger.warning("could not destroy session %s: %s", session_id, failure)
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"(and destroying session {session_id} failed: {failure})")

    def status(self) -> str:
        """The session's status as the server spells it (see :func:`normalize_status`)."""
        return self.sessions.status(self.session_id)

    def process_event(self, event_type: str, event_data: Mapping[str, Any] | None = None) -> Any:
        """Send a session event; see :meth:`Sessions.process_event`."""
        return self.sessions.process_event(self.session_id, event_type, event_data)

    def update(self, session_config: Mapping[str, Any]) -> Any:
        """Change the session's configuration (``session.update``)."""
        return self.sessions.update(self.session_id, session_config)
