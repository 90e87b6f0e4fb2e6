"""``LensClient``: the Lens API as rxlens users call it."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import reactivex
import requests
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

from rxlens._rest import session_running
from rxlens._text import mask_secrets
from rxlens._timers import shared_timers
from rxlens.errors import (
    AuthenticationError,
    ChannelError,
    ConfigurationError,
    LensAPIError,
    NotFound,
    RxLensError,
)
from rxlens.events import LensEvent, OnMalformed
from rxlens.operators import Narrowable, events_preset, resume, typed
from rxlens.operators import merge_sessions as _merge_sessions
from rxlens.retry import RetryPolicy
from rxlens.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_TIMEOUT,
    Closer,
    ConnectionState,
    SSESource,
    StateCallback,
    new_session,
    safe_url,
)
from rxlens.sse import report_state as report

if TYPE_CHECKING:
    from rxlens._rest import Lenses, Sessions
    from rxlens.mailbox import MailboxSource, OnLost, PollPolicy
    from rxlens.sse import AsyncSSESource, IOLoop

#: Which output channel to read: the SSE consumer, the ``session.read`` mailbox, or the one
#: the session's lens writes to.
Channel = Literal["auto", "sse", "mailbox"]

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
    """One typed connection: an :class:`rxlens.sse.SSESource` (or a
    :class:`rxlens.mailbox.MailboxSource`) decoded into Lens events.

    Like the SSE source under it, it is cold (one connection per subscription) and keeps the
    cursor (:attr:`last_event_id`) that a re-subscription resumes from.
    :attr:`unidentified_data` tells whether a data event (anything but the ``sse.stream.*``
    control frames, which servers may leave without ids) arrived without an ``id:``.
    """

    def __init__(
        self, source: SSESource | AsyncSSESource | MailboxSource, on_malformed: OnMalformed = "emit"
    ) -> None:
        super().__init__()
        self.sse = source
        self.unidentified_data = False
        self._on_malformed = on_malformed
        self._typed = source.pipe(typed(on_malformed, on_unidentified=self._note_unidentified))

    def _note_unidentified(self, event: LensEvent) -> None:
        if not self.unidentified_data and not event.type.startswith("sse.stream."):
            self.unidentified_data = True

    @property
    def url(self) -> str:
        return safe_url(self.sse.url)

    @property
    def last_event_id(self) -> str:
        return self.sse.last_event_id

    @property
    def closer(self) -> Closer | None:
        """The client's record of open connections, which ``resume`` (given this source as
        its cursor) registers its waits with, so that ``LensClient.close()`` ends them."""
        return self.sse.closer

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
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        io: Literal["threads", "asyncio"] = "threads",
    ) -> None:
        if io not in ("threads", "asyncio"):
            raise ConfigurationError(f'io must be "threads" or "asyncio", got {io!r}')
        self.io = io
        self._io_loop: IOLoop | None = None
        # Every stream's open connections, ended by close() (see rxlens.sse._closing).
        self._closer = Closer()
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
        if io == "asyncio":
            from rxlens.sse import IOLoop

            # Made now: a missing extra is said here, not at the first stream, and aiohttp's
            # import (a few MB) is paid up front, not inside the first subscription.
            self._io_loop = IOLoop(verify=verify)
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
        """End every stream of this client and close its HTTP session.

        Each open connection of :meth:`events`, :meth:`connect` and the mailbox channel is
        closed, and its subscriber gets :class:`~rxlens.errors.ClientClosed` (not retryable:
        ``resume`` ends too). A stream waiting to reconnect ends at once: one of :meth:`events`,
        and one composed by hand with :func:`~rxlens.operators.resume` on :meth:`connect`
        (the source as ``resume``'s cursor, or right upstream of it; otherwise at its next
        attempt, without connecting); a stream subscribed after ``close()`` fails at once. With
        ``io="asyncio"`` the I/O thread stops too (after telling its subscribers, on it).
        Closing twice does nothing more.
        """
        self._closer.close()
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
        channel: Literal["sse", "mailbox"] = "sse",
        poll: PollPolicy | None = None,
        on_lost: OnLost = "warn",
    ) -> TypedSource:
        """One typed connection to the session's SSE consumer, per subscription.

        ``channel="mailbox"``: to its ``session.read`` mailbox instead (see
        :meth:`events`; ``poll`` and ``on_lost`` are :class:`rxlens.mailbox.MailboxSource`'s).

        The building block of :meth:`events`; compose your own pipeline with it::

            source = client.connect(sid)
            source.pipe(
                heartbeat_timeout(15),                # before anything that drops heartbeats
                resume(policy, cursor=source),        # upstream of any share()
                until_end(),
                only_results(),
            )

        The source is the cursor: build this once per subscription (``reactivex.defer``) if
        you subscribe it more than once, as :meth:`events` does.
        """
        if channel == "mailbox":
            return TypedSource(
                self._mailbox_source(session_id, last_event_id, on_state, poll, on_lost),
                on_malformed,
            )
        if channel != "sse":
            raise ConfigurationError(f"connect: channel is 'sse' or 'mailbox', got {channel!r}")
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
            return SSESource(url, session=self.http, closer=self._closer, **options)
        from rxlens.sse import AsyncSSESource, IOLoop

        if self._io_loop is None:
            self._io_loop = IOLoop(verify=self.http.verify is not False)
        return AsyncSSESource(url, io_loop=self._io_loop, closer=self._closer, **options)

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
        channel: Channel = "auto",
        poll: PollPolicy | None = None,
        on_lost: OnLost = "warn",
    ) -> Observable[LensEvent]:
        """Every event of a session, resumed across drops, until the stream ends.

        ``channel``: a lens writes its outputs to the SSE consumer or to the ``session.read``
        mailbox, never both. ``"sse"`` reads the consumer (and, with ``check_channel``, raises
        :class:`ChannelError` for a mailbox lens); ``"mailbox"`` reads the mailbox (see
        :meth:`_mailbox_events`); ``"auto"`` (the default) picks by the lens metadata's writer
        and, when it names none, by one probe ``session.read`` (see :meth:`choose_channel`),
        and says which it chose (a ``connecting`` state's ``note`` and a log line);
        ``"auto"`` with ``check_channel=False`` reads SSE without asking (the caller checked).

        The canonical pipeline as a preset: ``connect`` → ``heartbeat_timeout`` → ``resume``
        → ``until_end`` (add ``only_results()`` for results only), run as one operator
        (:func:`rxlens.operators.events_preset`, equal to those composed) that the source
        feeds a read chunk at a time. It

        - resumes after drops and retryable errors (``policy``, default
          :class:`~rxlens.RetryPolicy`), from ``Last-Event-ID`` where the server sends ids;
        - treats a connection silent for more than ``heartbeat_timeout`` seconds (no frame of
          any kind; the server sends heartbeats every ~5 s) as dead, and resumes it; the
          seconds count from the connection's open (its response head), so a connection
          waiting in the client's own queue to open (``io="asyncio"``, thousands of sessions)
          is not taken for a silent one: the connect and read timeouts bound the opening;
        - resumes a close that came without ``sse.stream.end``;
        - completes after ``sse.stream.end`` (which it delivers).

        With ``follow=True``, after ``sse.stream.end`` it asks for the session's status and
        reconnects while the session still runs (the server ends a stream after ~60 s idle),
        completing when the session is destroyed or failed.

        Each subscription has its own connection, cursor and memory of ids: subscribing the
        returned Observable twice gives two independent streams that each get every event.
        Where the server sends ids, delivery is exactly once (SECURITY.md says when it can
        only be at least once). A reconnect without a cursor (the server sends no ``id:``
        lines, or none had arrived yet) still happens, but says once per reason (a
        ``backing_off`` state with a ``note``, and a warning) that events between the drop
        and the reconnect may be missing; ids that go back after a reconnect (a restarted
        server) are delivered with a note and a warning too.

        ``check_channel`` first reads the lens's metadata and raises :class:`ChannelError` when
        the lens writes to the ``session.read`` mailbox instead of SSE (a warning if the
        metadata cannot be read).
        """
        self.consumer_url(session_id), self.auth_headers()  # bad input fails here, not later
        if channel not in ("auto", "sse", "mailbox"):
            raise ConfigurationError(f"channel is 'auto', 'sse' or 'mailbox', got {channel!r}")
        if channel == "mailbox" or (channel == "auto" and check_channel):
            chosen: Literal["sse", "mailbox"] = "mailbox"
            why = "asked for"
            if channel == "auto":
                chosen, why = self.choose_channel(session_id)
            log.info("session %s: reading the %s channel (%s)", session_id, chosen, why)
            on_state = _announcing(on_state, chosen, why)
            if chosen == "mailbox" or why == _UNDECIDED:
                mailbox_events = self._mailbox_events(
                    session_id, last_event_id, policy, on_malformed, on_state, poll, on_lost,
                    scheduler,
                )
                if chosen == "mailbox":
                    return mailbox_events
                sse_events = self.events(
                    session_id,
                    last_event_id=last_event_id,
                    follow=follow,
                    heartbeat_timeout=heartbeat_timeout,
                    policy=policy,
                    on_malformed=on_malformed,
                    on_state=on_state,
                    check_channel=False,
                    scheduler=scheduler,
                    channel="sse",
                )
                return self._until_decided(session_id, sse_events, mailbox_events)
            check_channel = False  # decided: the lens writes to SSE
        elif check_channel:
            self.check_channel(session_id)

        def running() -> bool:
            return self._session_running(session_id)

        # io="asyncio": back-offs on the shared timer thread, not a timer thread each.
        backoff = scheduler if scheduler is not None or self.io == "threads" else shared_timers()

        def stages(
            _scheduler: abc.SchedulerBase | None = None, only: type[Any] | None = None
        ) -> Observable[LensEvent]:
            # Built per subscription: the source is the subscription's cursor, never shared.
            source = self.connect(
                session_id,
                last_event_id=last_event_id or "",
                on_malformed=on_malformed,
                on_state=on_state,
            )
            notes = _LossNotes(session_id, source, on_state)
            # typed -> heartbeat_timeout -> resume -> until_end, fused into one operator that
            # the SSE source feeds a read chunk at a time (the composed operators are its
            # reference, held equal by a property test).
            preset = source.sse.pipe(
                events_preset(
                    heartbeat_timeout=heartbeat_timeout,
                    policy=policy,
                    cursor=source,
                    on_malformed=on_malformed,
                    on_unidentified=source._note_unidentified,
                    on_state=notes,
                    heartbeat_scheduler=scheduler,
                    scheduler=backoff,
                )
            )
            once = preset if only is None else preset.narrowed(only)
            return _follow(once, running) if follow else once

        if follow:
            return reactivex.defer(stages)

        def narrowed(only: type[Any] | None) -> Observable[LensEvent]:
            # As reactivex.defer(stages), without its observer per item: the subscription's
            # own auto-detaching observer goes straight to the preset's. only_results() after
            # it filters inside the preset (Narrowable).
            def subscribe(
                observer: abc.ObserverBase[LensEvent], scheduler: abc.SchedulerBase | None = None
            ) -> abc.DisposableBase:
                return stages(scheduler, only)._subscribe_core(observer, scheduler)

            return Observable(subscribe)

        return Narrowable(narrowed)

    def merge_sessions(
        self,
        session_ids: Iterable[str],
        *,
        scheduler: abc.SchedulerBase | None = None,
        **events_options: Any,
    ) -> Observable[LensEvent]:
        """Several sessions' events as one stream, each event tagged with its ``session_id``.

        ``client.merge_sessions(["lsn-a", "lsn-b"], follow=True)`` merges ``self.events(sid,
        **events_options)`` of every session with :func:`rxlens.merge_sessions`: a session
        whose stream fails becomes one :class:`~rxlens.events.SessionFailed` event in the
        merged stream (never silent) and the others go on; the merge completes when every
        session has ended.
        """
        sources = {sid: self.events(sid, **events_options) for sid in session_ids}
        return _merge_sessions(sources, scheduler=scheduler)

    # -- the mailbox channel ------------------------------------------------------------------

    def _mailbox_source(
        self,
        session_id: str,
        last_event_id: str | None,
        on_state: StateCallback | None,
        poll: PollPolicy | None,
        on_lost: OnLost,
    ) -> MailboxSource:
        from rxlens.mailbox import MailboxSource

        # The endpoint comes from the session record, never from the base URL: the server
        # names it (another host, another scheme).
        endpoint = self.sessions.record(session_id).get("session_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise LensAPIError(200, f"session {session_id}'s record names no session_endpoint")
        return MailboxSource(
            endpoint,
            api_key=self.__key,
            last_event_id=last_event_id or "",
            poll=poll,
            on_lost=on_lost,
            on_state=on_state,
            closer=self._closer,
        )

    def _mailbox_events(
        self,
        session_id: str,
        last_event_id: str | None,
        policy: RetryPolicy | None,
        on_malformed: OnMalformed,
        on_state: StateCallback | None,
        poll: PollPolicy | None,
        on_lost: OnLost,
        scheduler: abc.SchedulerBase | None,
    ) -> Observable[LensEvent]:
        """:meth:`events` over the ``session.read`` mailbox: ``connect(channel="mailbox")`` →
        ``resume`` (cursor ``"<client_id>:<position>"``). No heartbeat timeout (the mailbox
        sends none; each request has its own reply timeout, ``poll.reply_timeout``) and no
        ``until_end``: the source completes once the session ended and its mailbox is drained.
        A batch possibly lost in a drop is reported (``on_lost="warn"``) or replayed
        (``on_lost="replay"``), see :class:`rxlens.mailbox.MailboxSource`."""

        source = self.connect(
            session_id,
            last_event_id=last_event_id or "",
            on_malformed=on_malformed,
            on_state=on_state,
            channel="mailbox",
            poll=poll,
            on_lost=on_lost,
        )
        return source.pipe(resume(policy, on_state=on_state, scheduler=scheduler))

    def choose_channel(self, session_id: str) -> tuple[Literal["sse", "mailbox"], str]:
        """The channel the session's outputs go to, and why: ``("mailbox", "the lens writes
        to mailbox_writer")``.

        1. The lens metadata: an SSE writer → ``"sse"``; only other writers → ``"mailbox"``.
        2. It names no writer: one ``session.read`` under a throwaway ``client_id`` (no real
           reader's position moves). Messages → ``"mailbox"``; none
           → ``"sse"`` (``num_outputs > 0`` says the lens writes there; with no output yet
           nothing can tell: :meth:`events` then reads SSE and probes the mailbox again every
           :data:`REPROBE_INTERVAL` seconds until the first output decides).

        Metadata that cannot be read (for another reason than a bad key or an unknown
        session, which the stream reports) gives ``"sse"`` with a warning, as
        :meth:`check_channel` does; so does a probe that fails (with a log line).
        """
        from rxlens.mailbox import probe

        try:
            config = self.sessions.lens_config(session_id)
        except Exception as exc:
            if _stream_fails_alike(exc):
                return "sse", "the session could not be read; the stream reports why"
            reason = mask_secrets(str(exc), (self.__key,) if self.__key else ())
            warnings.warn(
                f"could not read the lens metadata of session {session_id} to choose its output "
                f"channel ({type(exc).__name__}: {reason}); reading the SSE consumer: if no "
                "results arrive, pass channel='mailbox'",
                stacklevel=3,
            )
            return "sse", "the lens metadata could not be read (SSE by default)"
        writers = _writers(config) if config is not None else set()
        if any(w in SSE_WRITERS for w in writers):
            return "sse", f"the lens writes to {', '.join(sorted(writers))}"
        if writers:
            return "mailbox", f"the lens writes to {', '.join(sorted(writers))}"
        try:
            record = self.sessions.record(session_id)
            endpoint = record.get("session_endpoint")
            if not isinstance(endpoint, str) or not endpoint.startswith(("ws://", "wss://")):
                return "sse", "the lens names no writer and the session no mailbox endpoint"
            found = probe(endpoint, api_key=self.__key, timeout=self.timeout[1])
        except RxLensError as exc:
            # The probe is a guess's helper: its failure leaves the documented default.
            log.warning("session %s: the mailbox probe failed (%s): reading SSE", session_id, exc)
            return "sse", f"the lens names no writer and the probe failed ({type(exc).__name__})"
        if found:
            return "mailbox", "the lens names no writer; a probe session.read found messages"
        outputs = record.get("num_outputs")
        if isinstance(outputs, int) and outputs > 0:
            return "sse", f"the mailbox is empty while the session has {outputs} outputs"
        return "sse", _UNDECIDED

    def _until_decided(
        self,
        session_id: str,
        sse_events: Observable[LensEvent],
        mailbox_events: Observable[LensEvent],
    ) -> Observable[LensEvent]:
        """Read SSE, and probe the mailbox every :data:`REPROBE_INTERVAL` seconds until the
        first output decides: a data event on SSE stops the probing; messages in the mailbox
        switch to it (from its start: the probes moved no position), never both."""
        from rxlens.mailbox import probe

        def subscribe(
            observer: abc.ObserverBase[LensEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            current = SerialDisposable()
            lock = threading.Lock()
            decided = threading.Event()
            switched = threading.Event()

            def on_sse(event: LensEvent) -> None:
                with lock:
                    if switched.is_set():
                        return
                    if not event.type.startswith("sse."):
                        decided.set()
                observer.on_next(event)

            def on_sse_end(error: Exception | None = None) -> None:
                with lock:
                    if switched.is_set():
                        return
                    decided.set()
                if error is None:
                    observer.on_completed()
                else:
                    observer.on_error(error)

            def prober() -> None:
                while not decided.wait(REPROBE_INTERVAL):
                    try:
                        endpoint = self.sessions.record(session_id).get("session_endpoint")
                        found = isinstance(endpoint, str) and probe(
                            endpoint, api_key=self.__key, timeout=self.timeout[1]
                        )
                    except RxLensError as exc:
                        log.debug("session %s: mailbox probe failed: %s", session_id, exc)
                        continue
                    if not found:
                        continue
                    with lock:
                        if decided.is_set():
                            return
                        decided.set()
                        switched.set()
                    log.info("session %s: the mailbox has messages: reading it", session_id)
                    current.disposable = mailbox_events.subscribe(observer, scheduler=scheduler)
                    return

            current.disposable = sse_events.subscribe(
                on_sse, on_sse_end, on_sse_end, scheduler=scheduler
            )
            threading.Thread(target=prober, name="rxlens-channel-probe", daemon=True).start()

            def dispose() -> None:
                decided.set()
                current.dispose()

            return Disposable(dispose)

        return Observable(subscribe)

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


#: Why ``channel="auto"`` could not decide (no writer named, no output yet); it then reads
#: SSE and re-probes the mailbox every :data:`REPROBE_INTERVAL` seconds.
_UNDECIDED = "the lens names no writer and nothing was output yet: SSE until the first output"
#: Seconds between mailbox probes while ``channel="auto"`` is undecided.
REPROBE_INTERVAL = 10.0


def _channel_note(channel: str, why: str) -> str:
    return f"reading the {channel} channel: {why}"


def _announcing(
    on_state: StateCallback | None, channel: str, why: str
) -> StateCallback | None:
    """``on_state`` with the channel choice added as the note of the first ``connecting``."""
    if on_state is None:
        return None
    told = threading.Event()

    def hook(state: ConnectionState) -> None:
        if state.kind == "connecting" and not state.note and not told.is_set():
            told.set()
            state = dataclasses.replace(state, note=_channel_note(channel, why))
        report(on_state, state)

    return hook


def _stream_fails_alike(error: BaseException) -> bool:
    """Whether the stream itself will fail for the cause of ``error``: no key, a rejected key,
    an unknown session. Warning about it first would report one failure twice."""
    if isinstance(error, (ConfigurationError, AuthenticationError, NotFound)):
        return True
    return isinstance(error, LensAPIError) and error.status in (401, 403, 404)


class _LossNotes:
    """``on_state``, plus a note (and a warning) on a reconnect that cannot resume exactly.

    A reconnect without a cursor cannot ask for what was sent while it was down: either the
    server sends no ids at all, or none had arrived yet. Each reason is said once per
    subscription, on the ``backing_off`` state that it concerns.
    """

    def __init__(
        self, session_id: str, source: TypedSource, on_state: StateCallback | None
    ) -> None:
        self.session_id = session_id
        self.source = source
        self.on_state = on_state
        self.said: set[str] = set()

    def __call__(self, state: ConnectionState) -> None:
        if state.kind == "backing_off" and not state.last_event_id:
            if self.source.unidentified_data:
                why = "the server sends no event ids"
            else:
                why = "no event id has arrived yet, so the reconnect has no cursor"
            if why not in self.said:
                self.said.add(why)
                note = f"{why}: events between the drop and the reconnect may be missing"
                warnings.warn(f"session {self.session_id}: {note}", stacklevel=2)
                state = dataclasses.replace(state, note=note)
        report(self.on_state, state)


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


#: The one merge_sessions, here too for code that imported it from this module.
merge_sessions = _merge_sessions
