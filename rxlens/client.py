"""``LensClient``: the Lens API as rxlens users call it."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import requests
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

from rxlens._rest import session_running
from rxlens._text import mask_secrets
from rxlens.errors import (
    AuthenticationError,
    ChannelError,
    ConfigurationError,
    LensAPIError,
    NotFound,
    RxLensError,
)
from rxlens.events import LensEvent, OnMalformed
from rxlens.retry import RetryPolicy
from rxlens.sse._connect import SSESource
from rxlens.sse._decoder import _DEFAULT_MAX_EVENT_BYTES
from rxlens.sse._state import ConnectionState, StateCallback, report
from rxlens.sse._transport import DEFAULT_TIMEOUT, new_session, safe_url

if TYPE_CHECKING:
    from rxlens._rest import Lenses, Sessions
    from rxlens.sse import AsyncSSESource, IOLoop

log = logging.getLogger("rxlens.client")

#: The vendor SDK's default base URL.
DEFAULT_BASE_URL = "https://platform.u1.archetypeai.app/api"
ENV_API_KEY = "ATAI_API_KEY"
ENV_ENDPOINT = "ATAI_API_ENDPOINT"

#: Names a lens configuration uses for the SSE output channel.
SSE_WRITERS = ("server_sent_events_writer", "server_side_events_writer", "sse_writer")

_insecure_warned = threading.Event()


def _warn_insecure() -> None:
    if not _insecure_warned.is_set():
        _insecure_warned.set()
        warnings.warn(
            "TLS certificate verification is off (verify=False): the connection and the API key "
            "can be intercepted",
            stacklevel=3,
        )


class TypedSource(Observable[LensEvent]):
    """One typed connection: an :class:`rxlens.sse.SSESource` decoded into Lens events.

    Like the SSE source under it, it is cold (one connection per subscription) and keeps the
    cursor (:attr:`last_event_id`) that a re-subscription resumes from.
    :attr:`unidentified_data` tells whether a data event (anything but the ``sse.stream.*``
    control frames, which servers may leave without ids) arrived without an ``id:``.
    """

    def __init__(
        self, source: SSESource | AsyncSSESource, on_malformed: OnMalformed = "emit"
    ) -> None:
        from rxlens.operators._typed import _typed

        super().__init__()
        self.sse = source
        self.unidentified_data = False
        self._typed = source.pipe(_typed(on_malformed, self._note_unidentified))

    def _note_unidentified(self, event: LensEvent) -> None:
        if not self.unidentified_data and not event.type.startswith("sse.stream."):
            self.unidentified_data = True

    @property
    def url(self) -> str:
        return safe_url(self.sse.url)

    @property
    def last_event_id(self) -> str:
        return self.sse.last_event_id

    def __repr__(self) -> str:
        return f"TypedSource({self.url!r}, last_event_id={self.last_event_id!r})"

    def _subscribe_core(
        self, observer: abc.ObserverBase[LensEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return self._typed.subscribe(observer, scheduler=scheduler)


class LensClient:
    """A client of the Archetype AI Lens API.

    ``api_key`` defaults to the ``ATAI_API_KEY`` environment variable and ``base_url`` to
    ``ATAI_API_ENDPOINT``, else the vendor SDK's default, ``https://platform.u1.archetypeai.app
    /api``. Base URLs ending in ``/api`` and in ``/v0.5`` both work. A missing key is reported
    at the first call that needs it. The key never appears in a repr, a log line or an error.

    ``timeout`` is ``(connect, read)`` seconds for every request; ``verify=False`` turns TLS
    certificate checks off (with a warning).

    ``io`` chooses how streams are read: ``"threads"`` (the default) reads each connection on
    its own thread; ``"asyncio"`` reads every connection of the client on one shared asyncio
    I/O thread (needs ``rxlens[asyncio]``), for thousands of sessions in one process. With
    ``"asyncio"`` the subscribers' callbacks run on that thread: see
    :func:`rxlens.operators.hand_off` for a subscriber that may block.

    >>> client = LensClient(api_key="...", base_url="http://127.0.0.1:8765/api")
    >>> client.events("lsn-...").pipe(only_results())            # doctest: +SKIP
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool = True,
        session: requests.Session | None = None,
        max_event_bytes: int = _DEFAULT_MAX_EVENT_BYTES,
        io: Literal["threads", "asyncio"] = "threads",
    ) -> None:
        if io not in ("threads", "asyncio"):
            raise ConfigurationError(f'io must be "threads" or "asyncio", got {io!r}')
        self.io = io
        self._io_loop: IOLoop | None = None
        self.__key = api_key if api_key is not None else os.environ.get(ENV_API_KEY) or None
        chosen = base_url or os.environ.get(ENV_ENDPOINT) or DEFAULT_BASE_URL
        self.base_url = chosen.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"base_url must start with http:// or https://, got {safe_url(self.base_url)!r}"
            )
        self.timeout = timeout
        self.max_event_bytes = max_event_bytes
        self.http = session if session is not None else new_session()
        self.http.verify = verify
        if not verify:
            _warn_insecure()
        self._lenses: Lenses | None = None
        self._sessions: Sessions | None = None

    def __repr__(self) -> str:
        key = "set" if self.__key else "missing"
        return f"LensClient(base_url={safe_url(self.base_url)!r}, api_key=<{key}>)"

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def has_api_key(self) -> bool:
        return bool(self.__key)

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header; raises :class:`ConfigurationError` without a key."""
        if not self.__key:
            raise ConfigurationError(
                f"no Lens API key: pass api_key= to LensClient or set {ENV_API_KEY}"
            )
        return {"Authorization": f"Bearer {self.__key}"}

    def url(self, path: str) -> str:
        """``{base_url}/{path}``."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def consumer_url(self, session_id: str) -> str:
        """The SSE consumer endpoint of a session."""
        if not session_id or "/" in session_id:
            raise ConfigurationError(f"not a session id: {session_id!r}")
        return self.url(f"lens/sessions/consumer/{session_id}")

    def close(self) -> None:
        """Close the HTTP session (open subscriptions end when disposed).

        With ``io="asyncio"`` this also stops the I/O thread: its open connections end there
        (closed, with no further signal to their subscribers).
        """
        self.http.close()
        if self._io_loop is not None:
            self._io_loop.close()

    def __enter__(self) -> LensClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- REST -------------------------------------------------------------------------------

    @property
    def lenses(self) -> Lenses:
        """Lens registration and metadata (``register``, ``metadata``, ``delete``)."""
        if self._lenses is None:
            from rxlens._rest import Lenses

            self._lenses = Lenses(self)
        return self._lenses

    @property
    def sessions(self) -> Sessions:
        """Sessions (``create``, ``destroy``, ``metadata``, ``status``, ``process_event``, ...)."""
        if self._sessions is None:
            from rxlens._rest import Sessions

            self._sessions = Sessions(self)
        return self._sessions

    @contextmanager
    def session(self, lens_id: str, **create: Any) -> Iterator[str]:
        """Create a session of ``lens_id``; destroy it on exit, also on error. Yields its id."""
        record = self.sessions.create(lens_id, **create)
        session_id = str(record["session_id"])
        try:
            yield session_id
        finally:
            try:
                self.sessions.destroy(session_id)
            except RxLensError as exc:
                log.warning("could not destroy session %s: %s", session_id, exc)

    # -- streams ----------------------------------------------------------------------------

    def connect(
        self,
        session_id: str,
        *,
        last_event_id: str = "",
        on_malformed: OnMalformed = "emit",
        on_state: StateCallback | None = None,
    ) -> TypedSource:
        """One typed connection to the session's SSE consumer, per subscription.

        The building block of :meth:`events`; compose your own pipeline with it::

            client.connect(sid).pipe(
                heartbeat_timeout(15),   # before anything that drops heartbeats
                resume(policy),          # upstream of any share()
                until_end(),
                only_results(),
            )
        """
        source = self._source(
            self.consumer_url(session_id),
            headers=self.auth_headers(),
            last_event_id=last_event_id,
            timeout=self.timeout,
            max_event_bytes=self.max_event_bytes,
            on_state=on_state,
        )
        return TypedSource(source, on_malformed)

    def _source(self, url: str, **options: Any) -> SSESource | AsyncSSESource:
        """The SSE source for ``url``, read as ``io`` says."""
        if self.io == "threads":
            return SSESource(url, session=self.http, **options)
        from rxlens.sse import AsyncSSESource, IOLoop

        if self._io_loop is None:
            self._io_loop = IOLoop(verify=self.http.verify is not False)
        return AsyncSSESource(url, io_loop=self._io_loop, **options)

    def events(
        self,
        session_id: str,
        *,
        last_event_id: str | None = None,
        follow: bool = False,
        heartbeat_timeout: float | None = 15.0,
        policy: RetryPolicy | None = None,
        on_malformed: OnMalformed = "emit",
        on_state: StateCallback | None = None,
        check_channel: bool = True,
        scheduler: abc.SchedulerBase | None = None,
    ) -> Observable[LensEvent]:
        """Every event of a session, resumed across drops, until the stream ends.

        The canonical pipeline as a preset: ``connect`` → ``heartbeat_timeout`` → ``resume``
        → ``until_end`` (add ``only_results()`` for results only). It

        - resumes after drops and retryable errors (``policy``, default
          :class:`~rxlens.RetryPolicy`), from ``Last-Event-ID`` where the server sends ids;
        - treats a connection silent for more than ``heartbeat_timeout`` seconds (no frame of
          any kind; the server sends heartbeats every ~5 s) as dead, and resumes it;
        - resumes a close that came without ``sse.stream.end``;
        - completes after ``sse.stream.end`` (which it delivers).

        With ``follow=True``, after ``sse.stream.end`` it asks for the session's status and
        reconnects while the session still runs (the server ends a stream after ~60 s idle),
        completing when the session is destroyed or failed.

        When the server sends no ``id:`` lines, it still reconnects, but says once (a
        ``backing_off`` state with a ``note``, and a warning) that events between the drop
        and the reconnect may be missing: without ids nothing can be resumed exactly.

        ``check_channel`` first reads the lens's metadata and raises :class:`ChannelError` when
        the lens writes to the ``session.read`` mailbox instead of SSE (a warning if the
        metadata cannot be read).
        """
        from rxlens._timers import shared_timers
        from rxlens.operators._heartbeat_timeout import heartbeat_timeout as hb_timeout
        from rxlens.operators._resume import resume
        from rxlens.operators._until_end import until_end

        if check_channel:
            self.check_channel(session_id)
        warned = threading.Event()

        def state_hook(state: ConnectionState) -> None:
            if state.kind in ("backing_off", "failed") and not state.last_event_id:
                # resume sees the heartbeat-timeout stage, which has no cursor nor URL: take
                # them from the source, or every drop would look like a server without ids.
                state = dataclasses.replace(
                    state, url=state.url or source.url, last_event_id=source.last_event_id
                )
            if (
                state.kind == "backing_off"
                and not state.last_event_id
                and source.unidentified_data
                and not warned.is_set()
            ):
                warned.set()
                note = (
                    "the server sends no event ids: events between the drop and the reconnect "
                    "may be missing"
                )
                warnings.warn(f"session {session_id}: {note}", stacklevel=2)
                state = ConnectionState(
                    state.kind,
                    state.url,
                    last_event_id=state.last_event_id,
                    attempt=state.attempt,
                    delay=state.delay,
                    error=state.error,
                    headers=state.headers,
                    at=state.at,
                    note=note,
                )
            report(on_state, state)

        source = self.connect(
            session_id,
            last_event_id=last_event_id or "",
            on_malformed=on_malformed,
            on_state=on_state,
        )

        live: Observable[LensEvent] = source
        if heartbeat_timeout is not None:
            live = live.pipe(hb_timeout(heartbeat_timeout, scheduler=scheduler))
        # io="asyncio": back-offs on the shared timer thread, not a timer thread each.
        backoff = scheduler if scheduler is not None or self.io == "threads" else shared_timers()
        resumed = live.pipe(resume(policy, on_state=state_hook, scheduler=backoff))
        if not follow:
            return resumed.pipe(until_end())
        return _follow(resumed.pipe(until_end()), lambda: self._session_running(session_id))

    # -- helpers ----------------------------------------------------------------------------

    def _session_running(self, session_id: str) -> bool:
        try:
            status = str(self.sessions.status(session_id))
        except NotFound:
            return False
        except LensAPIError as exc:
            if exc.status == 404:
                return False
            raise
        return session_running(status)

    def check_channel(self, session_id: str) -> None:
        """Raise :class:`ChannelError` if the session's lens does not write to SSE.

        A lens writes to the SSE consumer or to the ``session.read`` mailbox, never both;
        waiting on the consumer of a mailbox lens would show heartbeats forever. When the
        metadata cannot be read, this warns and lets the stream go ahead.
        """
        try:
            config = self.sessions.lens_config(session_id)
        except Exception as exc:
            if _stream_fails_alike(exc):
                return  # the stream fails with this same cause: report it once, there
            # The reason may quote the server; an echo of the key is masked (again: an error
            # from elsewhere than the REST calls has not been through them).
            reason = mask_secrets(str(exc), (self.__key,) if self.__key else ())
            warnings.warn(
                f"could not read the lens metadata of session {session_id} to check its output "
                f"channel ({type(exc).__name__}: {reason}); if no results arrive, check that the "
                "lens writes to SSE (server_sent_events_writer) and not to the session.read "
                "mailbox",
                stacklevel=3,
            )
            return
        if config is None:
            return
        writers = _writers(config)
        if writers and not any(w in SSE_WRITERS for w in writers):
            raise ChannelError(
                f"session {session_id}'s lens writes to {', '.join(sorted(writers))}, not to the "
                "SSE consumer: read its results from the session.read mailbox over the session "
                "endpoint, or configure the lens with a server_sent_events_writer output stream"
            )


def _stream_fails_alike(error: BaseException) -> bool:
    """Whether the stream itself will fail for the cause of ``error``: no key, a rejected key,
    an unknown session. Warning about it first would report one failure twice."""
    if isinstance(error, (ConfigurationError, AuthenticationError, NotFound)):
        return True
    return isinstance(error, LensAPIError) and error.status in (401, 403, 404)


def _writers(config: Any) -> set[str]:
    """Every output writer type named in a lens configuration."""
    found: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("stream_type", "type", "writer") and (
            node.endswith("_writer") or node in SSE_WRITERS
        ):
            found.add(node)

    walk(config)
    return found


def _follow(once: Observable[LensEvent], running: Callable[[], bool]) -> Observable[LensEvent]:
    """Re-subscribe ``once`` after each ``sse.stream.end`` while ``running()`` says so."""

    def subscribe(
        observer: abc.ObserverBase[LensEvent], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        current = SerialDisposable()
        stopped = threading.Event()

        def start() -> None:
            if not stopped.is_set():
                current.disposable = once.subscribe(
                    observer.on_next, observer.on_error, ended, scheduler=scheduler
                )

        def ended() -> None:
            if stopped.is_set():
                return
            try:
                again = running()
            except Exception as exc:
                observer.on_error(exc)
                return
            if again:
                log.info("stream ended but the session still runs: reconnecting")
                start()
            else:
                observer.on_completed()

        def dispose() -> None:
            stopped.set()
            current.dispose()

        start()
        return Disposable(dispose)

    return Observable(subscribe)




def merge_sessions(
    client: LensClient | Mapping[str, Observable[LensEvent]],
    session_ids: Iterable[str] | None = None,
    *,
    scheduler: abc.SchedulerBase | None = None,
    **events_options: Any,
) -> Observable[LensEvent]:
    """Several sessions' events as one stream, each event tagged with its ``session_id``.

    ``merge_sessions(client, ["lsn-a", "lsn-b"], follow=True)`` merges ``client.events(sid,
    **events_options)`` of every session; ``merge_sessions({"lsn-a": obs, ...})`` merges
    Observables you built. A session whose stream fails becomes one
    :class:`~rxlens.operators.SessionFailed` event in the merged stream (never silent) and the
    others go on; the merge completes when every session has ended.
    """
    from rxlens.operators._merge_sessions import merge_sessions as merge

    if isinstance(client, LensClient):
        if session_ids is None:
            raise ConfigurationError("merge_sessions(client, session_ids): name the sessions")
        sources = {sid: client.events(sid, **events_options) for sid in session_ids}
    else:
        if session_ids is not None or events_options:
            raise ConfigurationError(
                "merge_sessions(mapping) takes no session_ids or events options"
            )
        sources = dict(client)
    return merge(sources, scheduler=scheduler)
