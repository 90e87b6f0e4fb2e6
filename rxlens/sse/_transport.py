"""The HTTP side of an SSE connection, on ``requests`` and ``urllib3``. Thin on purpose.

It opens the request, checks the status and the content type, and hands out the bytes as they
arrive (``read1``: whatever is available, never a fixed-size read that waits to fill up). It
also knows the socket under the response, because closing a response from another thread
blocks until the pending read times out, while shutting the socket down wakes it at once.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from rxlens._text import mask_secrets, secrets_of, truncate
from rxlens.errors import (
    AuthenticationError,
    ContentEncodingError,
    ContentTypeError,
    HTTPStatusError,
    LocalError,
    NotFound,
    ReadTimeout,
    RxLensError,
    TransportError,
)

log = logging.getLogger("rxlens.sse")

#: Read at most this much per call; ``read1`` returns sooner with whatever has arrived.
READ_SIZE = 65536
#: (connect, read) timeouts in seconds. The read timeout bounds a silent stream: Lens servers
#: send a heartbeat every ~5 s, so 60 s of silence means the connection is dead.
DEFAULT_TIMEOUT = (10.0, 60.0)


class SocketHandle:
    """The socket of one request, so that another thread can abort it at once."""

    __slots__ = ("_aborted", "_lock", "_sock", "client_closed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._aborted = False
        #: Aborted by the client's close() (the subscriber is told), not by a dispose.
        self.client_closed = False

    @property
    def aborted(self) -> bool:
        return self._aborted

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sock = sock
            aborted = self._aborted
        if aborted:
            _shutdown(sock)

    def close_by_client(self) -> None:
        """Abort for ``LensClient.close()``: the read ends and the subscriber is told."""
        self.client_closed = True
        self.abort()

    def abort(self) -> None:
        """Wake any blocked read on the socket (now or once it is attached)."""
        with self._lock:
            self._aborted = True
            sock = self._sock
        if sock is not None:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing to wake


# The handle of the request the current thread is making: lets a new connection report its
# socket while requests is still waiting for the response headers.
_current = threading.local()


class _TrackedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        handle = getattr(_current, "handle", None)
        if handle is not None:
            handle.attach(self.sock)


class _TrackedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        handle = getattr(_current, "handle", None)
        if handle is not None:
            handle.attach(self.sock)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        # urllib3 warns about an unverified connection on every request, so every reconnect
        # of a stream; rxlens warns once itself when verification is turned off
        # (LensClient(verify=False)). Otherwise this is urllib3's own check: connect early.
        HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


class StreamingAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections report their socket to the reading thread."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackedHTTPPool,
            "https": _TrackedHTTPSPool,
        }


class StreamingSession(requests.Session):
    """A ``requests.Session`` whose ``verify = False`` holds even with a CA bundle variable set.

    requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a session's ``verify =
    False`` (it merges the environment in before the session's own setting), so a client asked
    not to verify would verify anyway. A per-request ``verify`` still wins.
    """

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify is False:
            settings["verify"] = False
        return settings


def new_session() -> requests.Session:
    """A ``requests.Session`` set up for streaming (one per source, reused across reconnects)."""
    session = StreamingSession()
    adapter = StreamingAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, delta)


def content_type_essence(value: str | None) -> str:
    """``text/event-stream`` from ``Text/Event-Stream; charset=utf-8``."""
    return (value or "").split(";", 1)[0].strip().lower()


def safe_url(url: str) -> str:
    """The URL without user info or query string, for messages (never credentials)."""
    parsed = urllib3.util.parse_url(url)
    return parsed._replace(auth=None, query=None, fragment=None).url


def _read_body(response: requests.Response, limit: int = 4096) -> str:
    # read1: what has arrived, not a wait for ``limit`` bytes: a wrong response may be a
    # stream that sends a few bytes every few seconds.
    # Some servers quote the credentials they refuse: the key is masked before the cut (a key
    # straddling byte ``limit`` is read whole, then masked), and a read that ends inside the
    # key masks the piece it got.
    request = getattr(response, "request", None)
    secrets = secrets_of(request.headers if request is not None else None)
    extra = max((len(s.encode("utf-8")) for s in secrets), default=0)
    try:
        raw = response.raw.read1(limit + extra, decode_content=True)
    except Exception:  # the body is only context for the error: never mask the status
        return ""
    if not isinstance(raw, bytes):
        return ""
    length = response.headers.get("Content-Length", "").strip()
    whole = length.isdigit() and len(length) < 19 and len(raw) >= int(length)
    text = mask_secrets(raw.decode("utf-8", "replace"), secrets, cut=not whole)
    return text if len(raw) <= limit else truncate(text, limit)


def is_event_stream(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer is a 200 ``text/event-stream`` (else its body is the error's context)."""
    return status == 200 and (
        content_type_essence(headers.get("Content-Type")) == "text/event-stream"
    )


def answer_error(
    status: int, headers: Mapping[str, str], url: str, body: str = ""
) -> RxLensError | None:
    """The typed error for an answer that is no readable event stream, or None.

    The one rule of both I/O designs (``io="threads"`` and ``io="asyncio"``): 401/403
    :class:`AuthenticationError`, 404 :class:`NotFound`, another status
    :class:`HTTPStatusError` with its ``Retry-After``, a 200 of another type
    :class:`ContentTypeError`, a compressed one :class:`ContentEncodingError`. ``body`` is
    the start of the answer (read by the caller when :func:`is_event_stream` says no; the key
    already masked). A 204 is the end of the stream, not an error: callers check it first.
    """
    shown = safe_url(url)
    if status != 200:
        if status in (401, 403):
            return AuthenticationError(status, shown, body)
        if status == 404:
            return NotFound(status, shown, body)
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return HTTPStatusError(status, shown, body, retry_after=retry_after)
    content_type = headers.get("Content-Type", "")
    if content_type_essence(content_type) != "text/event-stream":
        return ContentTypeError(content_type, shown, body)
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        return ContentEncodingError(encoding, content_type, shown)
    return None


class Connection:
    """One open SSE response: check it with :meth:`open`, then iterate its byte chunks."""

    def __init__(
        self,
        session: requests.Session,
        url: str,
        headers: Mapping[str, str | bytes],
        timeout: tuple[float, float],
        handle: SocketHandle,
    ) -> None:
        self.session = session
        self.url = url
        self.headers = headers
        self.timeout = timeout
        self.handle = handle
        self.response: requests.Response | None = None
        #: Whether the server answered (failures after that may be reported in full).
        self.opened = False

    def open(self) -> requests.Response | None:
        """Send the request; return the checked response, or None for 204 (end of stream)."""
        _current.handle = self.handle
        # The body is read as it arrives and never decoded: ask for it uncompressed (requests
        # would otherwise offer gzip and deflate).
        headers: dict[str, str | bytes] = {"Accept-Encoding": "identity", **self.headers}
        # requests' exceptions hold the prepared request, Authorization header included: the
        # error is raised outside the ``except`` so that it is not even its __context__
        # (``from None`` only hides the context from tracebacks).
        failure: RxLensError | None = None
        try:
            response = self.session.get(
                self.url, headers=headers, stream=True, timeout=self.timeout
            )
        except requests.exceptions.ReadTimeout as exc:
            failure = ReadTimeout(f"no response from {safe_url(self.url)}: {self._reason(exc)}")
        except (requests.exceptions.URLRequired, ValueError) as exc:
            # requests' InvalidHeader / InvalidURL / MissingSchema / InvalidSchema are
            # ValueErrors: the request could not be built, so no reconnect can help. The
            # message is not kept: InvalidHeader quotes the header value, which may be the key.
            failure = LocalError(
                f"cannot send the request to {safe_url(self.url)}: {type(exc).__name__} (a "
                "header value that is not text or holds CR/LF, or a URL requests cannot use); "
                "not retried"
            )
        except requests.exceptions.RequestException as exc:
            if _certificate_failure(exc):
                # A certificate the client does not trust stays untrusted: do not retry.
                failure = TransportError(
                    f"cannot connect to {safe_url(self.url)}: {self._reason(exc)}; the server's "
                    "TLS certificate is not trusted (LensClient(verify=False) turns the check "
                    "off, at the cost of exposing the API key)"
                )
                failure.retryable = False
            else:
                failure = TransportError(
                    f"cannot connect to {safe_url(self.url)}: {self._reason(exc)}; "
                    "check the base URL and that the server is reachable"
                )
        finally:
            _current.handle = None
        if failure is not None:
            raise failure
        self.response = response
        self.opened = True
        # A pooled connection skips connect(): take the socket from the response as well.
        self.handle.attach(_response_socket(response))
        if response.status_code == 204:
            return None
        status, answer = response.status_code, response.headers
        body = "" if is_event_stream(status, answer) else _read_body(response)
        problem = answer_error(status, answer, self.url, body)
        if problem is not None:
            raise problem
        return response

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes as they arrive; ends at the end of the body."""
        assert self.response is not None
        raw = self.response.raw
        read1 = raw.read1
        failure: TransportError | None = None
        try:
            while True:
                chunk = read1(READ_SIZE)
                if not chunk:
                    return
                yield chunk
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
            raise ReadTimeout(
                f"no bytes from {safe_url(self.url)} for {self.timeout[1]:g} s"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            # ValueError: http.client reading a closed or aborted chunked body. The reason
            # may quote the bytes the server sent (a chunk-size line): masked, and raised
            # outside this block so that the parser's exception is not its __context__.
            failure = TransportError(
                f"connection to {safe_url(self.url)} broke: {self._reason(exc)}"
            )
        if failure is not None:
            raise failure

    def _reason(self, exc: BaseException) -> str:
        """:func:`_reason`, with any echo of the request's credentials masked: an HTTP
        parser's error quotes the bytes it could not parse (a status line, a chunk size)."""
        return mask_secrets(_reason(exc), secrets_of(self.headers))

    def close(self) -> None:
        response = self.response
        self.response = None
        if response is not None:
            try:
                response.close()
            except Exception as exc:  # closing a broken connection may fail: nothing to recover
                log.debug("closing response: %s", type(exc).__name__)


def _response_socket(response: requests.Response) -> socket.socket | None:
    raw = response.raw
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _certificate_failure(exc: BaseException) -> bool:
    """Whether a request failed because the server's certificate did not verify."""
    seen: set[int] = set()
    reason: BaseException | None = exc
    while reason is not None and id(reason) not in seen:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return True
        seen.add(id(reason))
        inner = getattr(reason, "reason", None) or (reason.args[0] if reason.args else None)
        reason = inner if isinstance(inner, BaseException) else reason.__context__
    return False


def _reason(exc: BaseException) -> str:
    # requests' messages embed urllib3's repr of the pool and the URL, never headers; keep the
    # innermost reason, which is the readable part.
    reason: BaseException = exc
    while True:
        inner = getattr(reason, "reason", None) or (reason.args[0] if reason.args else None)
        if isinstance(inner, BaseException) and inner is not reason:
            reason = inner
            continue
        break
    return f"{type(reason).__name__}: {reason}"
