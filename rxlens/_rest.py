"""The Lens REST calls around the stream: lenses and sessions, and the session-status rule.

:class:`Lenses` and :class:`Sessions` are thin, synchronous wrappers of the JSON calls; each
takes a :class:`requests.Session`, the base URL (``.../api`` or ``.../v0.5``: both serve
``{base}/lens/...``) and a function returning the request headers (``Authorization: Bearer``),
called on every request so that a missing key is reported at the first call, not at
construction. (``with client.session(lens_id) as sid:`` is :meth:`rxlens.LensClient.session`.)

Every failure is a :class:`~rxlens.errors.LensAPIError` (:func:`error_from_response` reads each
error body shape the API uses, including errors inside a ``200`` answer) or, when no answer
came, a :class:`~rxlens.errors.TransportError`. The API key never appears in either: every text
taken from an answer is masked (:func:`rxlens._text.mask_secrets`) before it is cut, and no
error keeps requests' exception (which holds the request, headers included) as its context.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import requests

from rxlens._text import mask_secrets, secrets_of, truncate
from rxlens.errors import BODY_LIMIT, LensAPIError, NotFound, TransportError
from rxlens.sse import DEFAULT_TIMEOUT

__all__ = [
    "ClientLike",
    "HeadersProvider",
    "Lenses",
    "Sessions",
    "error_from_response",
    "normalize_status",
    "session_running",
]

#: Returns the headers of a request (at least ``Authorization``); may raise
#: :class:`~rxlens.errors.ConfigurationError` when no key is configured.
HeadersProvider = Callable[[], Mapping[str, str]]

#: The largest answer rxlens reads (bytes, once decompressed); a longer one is refused.
MAX_RESPONSE_BYTES = 64 * 2**20

log = logging.getLogger("rxlens.rest")

#: The methods sent a second time when the connection breaks under the first: the safe ones
#: (RFC 9110, 9.2.1), which change nothing on the server however often they arrive. A POST
#: that broke its connection may still have been acted on, so it is never sent twice.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_KEY_HINT = "check the API key (ATAI_API_KEY or api_key=) and that it may use this resource"

#: How much of an answer's text an error quotes (characters), once the key is masked.
TEXT_LIMIT = 500

# The only numeric statuses ever observed (lens-wire-format: "3" running, "6" failed); others,
# "5" included, are left as sent: a guess here would decide when a stream stops following.
_NUMERIC_STATUS = {"3": "RUNNING", "6": "FAILED"}

#: The statuses of a session that is (or is about to be) producing.
RUNNING_STATUSES = frozenset({"REGISTERED", "STARTING", "RUNNING"})


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
        found = (text or response.reason or "no error message", None, None, None)
    message, code, suggestion, error_uid = found
    if suggestion is None and status in (401, 403):
        suggestion = _KEY_HINT
    secrets = _sent_secrets(response)
    return LensAPIError(
        status,
        _server_text(message, secrets) or "no error message",
        code=_server_text(code, secrets),
        suggestion=_server_text(suggestion, secrets),
        error_uid=_server_text(error_uid, secrets),
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


def _server_text(text: str | None, secrets: Iterable[str], limit: int = TEXT_LIMIT) -> str | None:
    """Text from an answer, fit for an error: the key masked, then cut (in that order)."""
    return None if text is None else truncate(mask_secrets(text, secrets), limit)


def _sent_secrets(response: requests.Response) -> tuple[str, ...]:
    """The credentials the request of ``response`` carried (what an echo would quote)."""
    request = getattr(response, "request", None)
    return secrets_of(request.headers if request is not None else None)


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


def _broken_connection(exc: requests.RequestException) -> bool:
    """Whether a request failed because its connection broke (closed without an answer,
    reset, refused): not a timeout (a second try would double the wait) nor a TLS failure
    (the certificate stays what it is)."""
    return isinstance(exc, requests.ConnectionError) and not isinstance(
        exc, (requests.Timeout, requests.exceptions.SSLError)
    )


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


def session_running(status: object) -> bool:
    """Whether a session in ``status`` is running, or about to: the one rule rxlens follows.

    True for ``REGISTERED``, ``STARTING`` and ``RUNNING`` in any spelling
    :func:`normalize_status` reads (``"3"`` included). Everything else is not running:
    ``DESTROYED``, ``FAILED`` (``"6"``), ``STALE``, and any status rxlens does not know, such
    as the undocumented numeric codes (``"5"``): a stream that follows a session stops rather
    than reconnecting to a session it cannot tell is alive.
    """
    return normalize_status(status) in RUNNING_STATUSES


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
        # Errors are raised outside the ``except`` blocks: requests' exceptions hold the
        # prepared request (headers included) and a JSON error holds the whole body, and an
        # error raised inside the block would keep them as its __context__ (``from None``
        # only hides the context from tracebacks).
        failure: TransportError | None = None
        # A safe method is sent a second time, at once, when the first send broke the
        # connection (see _SAFE_METHODS): the usual cause is a pooled keep-alive connection that
        # the server (or a proxy) closed as it was being reused.
        attempts = 2 if method in _SAFE_METHODS else 1
        for attempt in range(1, attempts + 1):
            failure = None
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
                failure = TransportError(
                    f"{method} {url}: no answer in time ({type(exc).__name__})"
                )
            except requests.RequestException as exc:
                # Only the class name: the exception's text may carry the prepared request.
                failure = TransportError(f"{method} {url} failed: {type(exc).__name__}")
                if attempt < attempts and _broken_connection(exc):
                    log.debug(
                        "%s %s: the connection broke (%s); sent again",
                        method,
                        url,
                        type(exc).__name__,
                    )
                    continue
            break
        if failure is not None:
            raise failure
        with response:
            if response.status_code >= 400:
                raise error_from_response(response)
            if response.status_code == 204 or not response.content:
                return None
            payload = _json_or_not(response)
            if payload is _NOT_JSON:
                text = _server_text(response.text, _sent_secrets(response), BODY_LIMIT // 8)
                raise LensAPIError(
                    response.status_code, f"the answer to {method} {path} is not JSON: {text!r}"
                )
            if _error_in_success(payload):
                raise error_from_response(response)
            return payload

    def _unexpected(self, what: str, value: Any, limit: int = 200) -> LensAPIError:
        """The error for an answer of the wrong shape, quoting it with the key masked."""
        # The headers of the request just made: what an echo in its answer would quote.
        secrets = secrets_of(self._headers())
        return LensAPIError(200, f"{what}{_server_text(_text(value), secrets, limit)}")

    def _object(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        raise self._unexpected("expected a JSON object, got ", value)

    def _records(self, value: Any) -> list[dict[str, Any]]:
        # A list of records; a lone record is accepted as a list of one.
        if isinstance(value, dict):
            return [value]
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return value
        raise self._unexpected("expected a list of records, got ", value)


_NOT_JSON = object()


def _json_or_not(response: requests.Response) -> Any:
    """The answer's JSON, or ``_NOT_JSON``.

    The parse error is not kept: it holds the whole body (and so any echo of the key).
    """
    try:
        return response.json()
    except ValueError:
        return _NOT_JSON


class Lenses(_Api):
    """``client.lenses``: register, describe and delete lenses."""

    def register(self, lens_config: Mapping[str, Any]) -> dict[str, Any]:
        """Register a lens (``POST /lens/register``); the record, with its ``lens_id``."""
        body = {"lens_config": lens_config}
        return self._object(self._call("POST", "/lens/register", body=body))

    def metadata(self, lens_id: str | None = None) -> list[dict[str, Any]]:
        """Lens records (``GET /lens/metadata``): all, or the one with ``lens_id``.

        Each has ``lens_id``, ``lens_name``, ``lens_status`` and ``lens_config``.
        """
        params = {"lens_id": lens_id} if lens_id else None
        return self._records(self._call("GET", "/lens/metadata", params=params))

    def delete(self, lens_id: str) -> dict[str, Any]:
        """Delete a lens (``POST /lens/delete``)."""
        return self._object(self._call("POST", "/lens/delete", body={"lens_id": lens_id}))


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
        record = self._object(self._call("POST", "/lens/sessions/create", body=body))
        if not isinstance(record.get("session_id"), str):
            raise self._unexpected("session create answered without a session_id: ", record)
        return record

    def destroy(self, session_id: str) -> dict[str, Any]:
        """End a session (``POST /lens/sessions/destroy``); open streams get ``sse.stream.end``."""
        return self._object(
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
        return self._records(self._call("GET", "/lens/sessions/metadata", params=params))

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
        return self._object(self.process_event(session_id, "session.status"))

    def status(self, session_id: str) -> str:
        """The session's status as the server spells it (``"SESSION_STATUS_RUNNING"``,
        ``"LensSessionStatus.SESSION_STATUS_RUNNING"``, ``"3"``); compare through
        :func:`normalize_status`, or ask :func:`session_running`."""
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
            raise self._unexpected("session.status answered without a session_status: ", record)
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
        for lens in self._records(lenses):
            if lens.get("lens_id") == lens_id and isinstance(lens.get("lens_config"), dict):
                return dict(lens["lens_config"])
        return None

    def update(self, session_id: str, session_config: Mapping[str, Any]) -> Any:
        """Change a running session's configuration (``session.update``)."""
        return self.process_event(
            session_id, "session.update", {"session_config": dict(session_config)}
        )
