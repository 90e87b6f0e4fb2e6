"""``AsyncSSESource``: SSE connections that share one asyncio I/O thread instead of one thread each.

A thread per connection is simple and fast for a few sessions, but a process reading thousands
of sessions spends its time switching threads and its memory on their stacks. Here every
connection of an :class:`IOLoop` is a task on one asyncio event loop (aiohttp, the optional
extra ``rxlens[asyncio]``), fed into the same :class:`Decoder` and handing out the same
:class:`Event` values, typed errors, :class:`ConnectionState` reports and server hints as
:class:`rxlens.sse.SSESource`, so every operator downstream works unchanged.

The subscriber's callbacks run on the I/O thread: a subscriber that blocks holds up every
other connection of the loop. :func:`rxlens.operators.hand_off` moves delivery to a thread of
its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxlens._text import mask_secrets, secrets_of, truncate
from rxlens.errors import (
    ClientClosed,
    EventTooLarge,
    LocalError,
    MissingDependency,
    ReadTimeout,
    RxLensError,
    StreamClosed,
    TransportError,
)
from rxlens.sse._closing import Closer
from rxlens.sse._connect import encode_event_id as utf8_event_id
from rxlens.sse._connect import unexpected_error
from rxlens.sse._decoder import _DEFAULT_MAX_EVENT_BYTES, Decoder
from rxlens.sse._delivery import FrameObserver, finish
from rxlens.sse._delivery import deliver as deliver_events
from rxlens.sse._models import Event
from rxlens.sse._state import ConnectionState, StateCallback, report
from rxlens.sse._transport import DEFAULT_TIMEOUT, answer_error, is_event_stream, safe_url

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("rxlens.sse")


def _aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test setup
        raise MissingDependency(
            'io="asyncio" needs aiohttp: pip install "rxlens[asyncio]"'
        ) from exc
    return aiohttp


class IOLoop:
    """One asyncio event loop on one daemon thread, shared by many connections.

    The thread starts with the first connection and ends when the last one has ended (a
    reference count), or at :meth:`close`; a later connection starts a new one. Its aiohttp
    session closes every socket after use (``force_close``): SSE connections are long-lived,
    so there is nothing to pool, and a disposed connection leaves no socket behind.

    At most :attr:`opening` connections are being opened at a time (connect, request, status
    line and headers); the others wait their turn, first come first served. Why: one thread
    opens connections at a bounded rate (about 1 ms of CPU each, measured), and ten thousand
    opened all at once progress together and all finish late, past the 15 s heartbeat
    timeout of :meth:`rxlens.LensClient.events`, whose reconnects then cancel them and queue
    them again: measured, 10,000 sessions opened that way never all got open. In turn, the
    first ones open at once and start delivering while the rest queue.
    """

    #: How many connections may be opening at once (see the class docstring).
    opening = 64

    def __init__(self, *, verify: bool = True, name: str = "rxlens-aio") -> None:
        _aiohttp()  # useless without it: say so now (MissingDependency)
        self.verify = verify
        self.name = name
        self._lock = threading.Lock()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._gate: asyncio.Semaphore | None = None
        self._watches: _ReadWatches | None = None
        self._stopping: threading.Thread | None = None  # stopped by release(), not yet joined

    def __repr__(self) -> str:
        return f"IOLoop(connections={self._users}, running={self._thread is not None})"

    @property
    def thread(self) -> threading.Thread | None:
        """The I/O thread, while it runs."""
        return self._thread

    def acquire(self) -> asyncio.AbstractEventLoop:
        """Count one more connection; start the loop thread if none runs."""
        with self._lock:
            self._users += 1
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, started), name=self.name, daemon=True
                )
                self._loop, self._thread = loop, thread
                thread.start()
                started.wait()
            return self._loop

    def release(self) -> None:
        """Count one connection less; the last one stops the loop thread (thread-safe)."""
        with self._lock:
            # Never below zero: close() resets the count, and the connections it ended still
            # release theirs afterwards.
            self._users = max(0, self._users - 1)
            if self._users > 0 or self._loop is None:
                return
            loop, thread = self._loop, self._thread
            self._loop, self._thread = None, None
            # close() waits for it too, if called while it stops (LensClient.close() ends the
            # connections first, and the last one's release may stop the loop before).
            self._stopping = thread
            session, self._session, self._gate = self._session, None, None
            self._watches = None
        loop.call_soon_threadsafe(lambda: loop.create_task(_shut_down(loop, session)))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop now (open connections end without a signal) and wait for its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            session = self._session
            self._loop, self._thread, self._session, self._users = None, None, None, 0
            self._gate, self._watches = None, None
            stopping, self._stopping = self._stopping, None
        if stopping is not None and stopping is not threading.current_thread():
            stopping.join(timeout)  # stopped by the last release(): wait for it as for ours
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(_shut_down(loop, session)))
        except RuntimeError:
            return  # the loop has already closed
        if thread is not threading.current_thread():
            thread.join(timeout)

    def session(self) -> aiohttp.ClientSession:
        """The loop's aiohttp session (called on the loop thread)."""
        if asyncio.get_running_loop() is not self._loop:
            raise TransportError("the I/O loop was closed (LensClient.close())")
        if self._session is None or self._session.closed:
            aiohttp = _aiohttp()
            connector = aiohttp.TCPConnector(
                limit=0, force_close=True, ssl=None if self.verify else False
            )
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def read_watches(self) -> _ReadWatches:
        """The read timeouts of the loop's streams (called on the loop thread)."""
        loop = asyncio.get_running_loop()
        if self._watches is None or self._watches.loop is not loop:
            self._watches = _ReadWatches(loop)
        return self._watches

    def gate(self) -> asyncio.Semaphore:
        """The turn to open a connection (called on the loop thread; see the class docstring)."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.opening)
        return self._gate

    def _run(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            loop.close()


async def _shut_down(
    loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession | None
) -> None:
    # Cancel whatever still runs (connections of a closed client), close their sockets, stop.
    this = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not this]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if session is not None:
        await session.close()
    loop.stop()


class _ReadWatch:
    """The read timeout of one open stream: no byte for ``seconds`` fails its pending read.

    The failure is an :class:`asyncio.TimeoutError` raised by the read, as aiohttp's own read
    timeout does. Checked by the loop's :class:`_ReadWatches`.
    """

    __slots__ = ("content", "last", "owner", "quiet_since", "seconds")

    def __init__(self, owner: _ReadWatches, content: Any, seconds: float) -> None:
        self.owner = owner
        self.content = content
        self.seconds = seconds
        self.last = content.total_bytes
        self.quiet_since = time.monotonic()

    def expired(self, now: float) -> bool:
        """Whether the stream has been silent for ``seconds`` (then its read fails)."""
        seen = self.content.total_bytes
        if seen != self.last:
            self.last, self.quiet_since = seen, now
            return False
        if now - self.quiet_since >= self.seconds:
            self.content.set_exception(asyncio.TimeoutError())
            return True
        return False

    def cancel(self) -> None:
        self.owner.remove(self)


class _ReadWatches:
    """The read timeouts of one loop's open streams, all checked by one timer.

    Every quarter of the shortest timeout among them, one pass looks at each stream's byte
    count, so a silence is caught within 1.25 times its ``seconds``. Why not aiohttp's
    ``sock_read``: it makes and cancels a timer per chunk (a fifth of the I/O thread's time at
    2,000 sessions, measured). Why not a timer per stream, re-armed every quarter timeout: at
    10,000 streams, each re-arm left a timer handle, a context and a bound method alive for
    the quarter, long enough to reach the collector's oldest generation, and its full passes
    stalled every stream of the loop in proportion (see rxlens._timers.SharedTimer). One pass over
    10,000 streams takes a few ms of the loop, once per quarter timeout (15 s by default).
    """

    __slots__ = ("handle", "loop", "period", "watches")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watches: dict[_ReadWatch, None] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.period = 0.0

    def watch(self, content: Any, seconds: float) -> _ReadWatch:
        """Watch ``content`` (an aiohttp body) from now on (called on the loop thread)."""
        watch = _ReadWatch(self, content, seconds)
        self.watches[watch] = None
        period = seconds / 4
        if self.handle is None or period < self.period:
            if self.handle is not None:
                self.handle.cancel()
            self.period = period
            self.handle = self.loop.call_later(period, self.sweep)
        return watch

    def remove(self, watch: _ReadWatch) -> None:
        self.watches.pop(watch, None)
        if not self.watches and self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def sweep(self) -> None:
        self.handle = None
        now = time.monotonic()
        watches = self.watches
        period = float("inf")
        for watch in list(watches):
            if watch.expired(now):
                del watches[watch]
            elif watch.seconds < period:
                period = watch.seconds
        if watches:
            self.period = period / 4
            self.handle = self.loop.call_later(self.period, self.sweep)


#: The most one read of a stream's body hands to the decoder. aiohttp's ``readany`` hands out
#: the whole buffer, which grows to hundreds of KB while the loop is busy elsewhere, and the
#: decoder copies a chunk a few times (measured: 480 KB chunks took a stream of 64 KiB ids to
#: a 2.6 MB peak, over the hostile-input suite's 2 MiB bound).
_READ_BYTES = 64 * 1024


async def _read(reader: Any) -> bytes:
    """The next chunk of a response body; what arrived before a failure, then the failure.

    aiohttp's reads raise a failure of the connection (a cut mid-body, the read timeout) as
    soon as it is set, even with bytes already received and buffered: the events in those
    bytes were lost and the cursor stayed behind them, so a reconnect asked for them with an
    older ``Last-Event-ID`` or none at all (found by the chaos suite run with
    ``io="asyncio"``). The threaded source delivers every byte read before a cut; so does this.
    A coroutine of its own only on that path: a read waits in aiohttp's ``read`` directly, one
    coroutine fewer per waiting stream for the collector to walk (see ``_ReadWatches``).
    """
    failure = reader.exception()
    if failure is not None:
        # aiohttp has no public read of the buffer once a failure is set: lift the failure
        # for one non-blocking read, then put it back.
        reader._exception = None
        try:
            data: bytes = reader.read_nowait(_READ_BYTES)
        finally:
            reader._exception = failure
        if data:
            return data
    chunk: bytes = await reader.read(_READ_BYTES)  # what is there, up to the bound
    return chunk


#: The loop of sources made without one (``AsyncSSESource(url)`` on its own), made with the
#: first of them (an IOLoop needs aiohttp, and importing this module must not).
_default_loop: IOLoop | None = None
_default_lock = threading.Lock()


def _default_io_loop() -> IOLoop:
    global _default_loop
    with _default_lock:
        if _default_loop is None:
            _default_loop = IOLoop(name="rxlens-aio-default")
        return _default_loop


def encode_event_id(event_id: str) -> str:
    """``event_id`` checked for a ``Last-Event-ID`` header (aiohttp writes headers as UTF-8).

    The check is the threaded source's: :class:`~rxlens.errors.UnsendableEventId` (not
    retried) for an id no header carries unchanged.
    """
    utf8_event_id(event_id)
    return event_id


class _Subscription:
    """One subscription's state: its cursor, and whether it was disposed."""

    __slots__ = ("client_closed", "disposed", "last_event_id", "observer", "opened", "task")

    def __init__(self, observer: abc.ObserverBase[Event], last_event_id: str) -> None:
        self.observer = observer
        self.last_event_id = last_event_id
        self.disposed = False
        #: Ended by the client's close() (the subscriber is told), not by a dispose.
        self.client_closed = False
        #: The task, once its body runs (set and read on the loop thread only).
        self.task: asyncio.Task[None] | None = None
        #: Whether the server answered (failures after that may be reported in full).
        self.opened = False


def deliver(
    source: AsyncSSESource, sub: _Subscription, decoder: Decoder, chunk: bytes
) -> Exception | None:
    """Feed one chunk; deliver its events; return why the stream must end, or None.

    The core of a read loop, without I/O: the decoder, the cursor, the ``retry:`` hint, and a
    subscriber's own exception marked so that it is never retried.
    """
    try:
        events = decoder.feed(chunk)
        failure: Exception | None = None
    except EventTooLarge as exc:
        events, failure = exc.events, exc
    if decoder.retry is not None:
        source.retry_ms = decoder.retry
    source.delivered += len(events)
    ended = deliver_events(events, sub.observer, source, lambda: sub.disposed)
    sub.last_event_id = source.last_event_id
    if ended is not None:
        return ended
    if failure is not None:
        return failure
    sub.last_event_id = source.last_event_id = decoder.last_event_id
    return None


class AsyncSSESource(Observable[Event]):
    """A cold Observable of :class:`Event` read on a shared asyncio I/O thread.

    It behaves as :class:`rxlens.sse.SSESource` (same events, errors, states and hints; see
    there how the stream ends), with two differences: every subscription is a task on
    ``io_loop`` (by default one loop shared by every source made without one) instead of a
    thread, and the callbacks run on that loop's thread. Each subscription starts from the
    cursor the source holds when it subscribes (``last_event_id``, which a re-subscription
    after a drop has advanced to the last id delivered) and sends it as ``Last-Event-ID``.

    Disposing from any thread stops delivery at once and closes the connection on the loop.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str = "",
        io_loop: IOLoop | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_event_bytes: int = _DEFAULT_MAX_EVENT_BYTES,
        on_state: StateCallback | None = None,
        closer: Closer | None = None,
    ) -> None:
        super().__init__()
        if last_event_id:
            encode_event_id(last_event_id)  # refuse at once what could never be sent
        _aiohttp()
        #: The client's (see rxlens.sse._closing): its close() ends this source's connections.
        self.closer = closer
        self.url = url
        self._headers = dict(headers or {})
        #: The last event id delivered, by the latest subscription (the next one resumes here).
        self.last_event_id = last_event_id
        #: The last valid ``retry:`` value the server sent (ms), across connections.
        self.retry_ms: int | None = None
        #: How many events this source has decoded, across connections.
        self.delivered = 0
        self.io_loop = io_loop if io_loop is not None else _default_io_loop()
        self.timeouts = timeout
        self.max_event_bytes = max_event_bytes
        self.on_state = on_state

    def __repr__(self) -> str:
        # Never the headers: they carry the API key.
        return f"AsyncSSESource({safe_url(self.url)!r}, last_event_id={self.last_event_id!r})"

    def request_headers(self, last_event_id: str) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "Accept-Encoding": "identity",
        }
        headers.update(self._headers)
        if last_event_id:
            headers["Last-Event-ID"] = encode_event_id(last_event_id)
        return headers

    def _subscribe_core(
        self, observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        sub = _Subscription(observer, self.last_event_id)
        closer = self.closer
        io = self.io_loop
        if closer is not None and closer.closed:
            # A closed client opens no connection, nor an I/O thread: told at once.
            observer.on_error(ClientClosed())
            return Disposable()
        loop = io.acquire()
        key: int | None = None
        if closer is not None:
            key = closer.add(lambda: self._close_by_client(sub, loop))
            if key is None:  # closed meanwhile
                io.release()
                observer.on_error(ClientClosed())
                return Disposable()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._run(sub), loop)

        def done(_f: Future[None]) -> None:
            io.release()
            if closer is not None:
                closer.discard(key)

        future.add_done_callback(done)

        def dispose() -> None:
            sub.disposed = True
            future.cancel()  # thread-safe: cancels the task on the loop

        return Disposable(dispose)

    @staticmethod
    def _close_by_client(sub: _Subscription, loop: asyncio.AbstractEventLoop) -> None:
        # From the thread of LensClient.close(). The task is cancelled on the loop, so that
        # its body tells the subscriber there (the concurrent future's cancel would complete
        # it on this thread at once, before the task stops delivering).
        sub.client_closed = True

        def cancel() -> None:
            if sub.task is not None:
                sub.task.cancel()
            # else its body has not started: it finds client_closed when it does

        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError:
            pass  # the loop is closed: its tasks are gone, nothing is left to tell

    def _state(self, sub: _Subscription, kind: Any, **fields: Any) -> None:
        if self.on_state is not None:
            report(
                self.on_state,
                ConnectionState(
                    kind,
                    safe_url(self.url),
                    last_event_id=sub.last_event_id,
                    at=time.time(),
                    **fields,
                ),
            )

    async def _run(self, sub: _Subscription) -> None:
        # The task body: whatever fails in the library ends the subscription with a typed
        # on_error, never the task alone (the rule of SSESource._run).
        sub.task = asyncio.current_task()
        observer = sub.observer
        terminated = False
        try:
            try:
                if sub.client_closed:
                    error: Exception | None = ClientClosed()  # closed before this started
                else:
                    error = await self._connect_and_read(sub)
            except asyncio.CancelledError:
                self._state(sub, "closed")
                if sub.client_closed and not sub.disposed:
                    terminated = True
                    observer.on_error(ClientClosed())
                raise
            if sub.disposed:
                self._state(sub, "closed")
                return
            if sub.client_closed and not isinstance(error, ClientClosed):
                error = ClientClosed()  # whatever the connection's end, the client's close
            terminated = True
            finish(observer, error, self.retry_ms, lambda: self._state(sub, "closed"))
        except Exception as exc:
            if terminated:
                # The subscriber's own on_error / on_completed raised: nobody is left to tell.
                log.exception("a subscriber's on_error or on_completed raised")
                return
            observer.on_error(unexpected_error(exc, after_open=True))

    async def _connect_and_read(self, sub: _Subscription) -> Exception | None:
        """One connection; returns why it ended (None: the server answered 204)."""
        aiohttp = _aiohttp()
        try:
            headers = self.request_headers(sub.last_event_id)
        except RxLensError as exc:
            return exc
        # No ``sock_read``: aiohttp re-arms it on every read (a timer cancelled and made per
        # chunk, a fifth of the I/O thread's time at 2,000 sessions, measured). The answer's
        # head gets connect + read seconds; the body is watched by _ReadWatch.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts[0], sock_read=None)
        self._state(sub, "connecting")
        if isinstance(sub.observer, FrameObserver):
            sub.observer.on_connecting()  # the heartbeat waits while it queues to open
        try:
            return await self._open_and_read(sub, headers, timeout)
        except RxLensError as exc:
            return exc
        except Exception as exc:  # not an rxlens error: a bug, or the network below aiohttp
            return unexpected_error(exc, after_open=sub.opened)

    async def _open_and_read(
        self, sub: _Subscription, headers: Mapping[str, str], timeout: Any
    ) -> Exception | None:
        """Open, check and read one response; returns why it ended (None: a 204)."""
        aiohttp = _aiohttp()
        failure: Exception | None = None
        response = None
        try:
            try:
                async with self.io_loop.gate():
                    response = await asyncio.wait_for(
                        self.io_loop.session().get(
                            self.url, headers=headers, timeout=timeout, allow_redirects=True
                        ),
                        sum(self.timeouts),
                    )
            except asyncio.TimeoutError as exc:
                failure = ReadTimeout(
                    f"no response from {safe_url(self.url)}: {self._reason(exc, headers)}"
                )
            except ValueError as exc:
                # The request could not be built (a header value HTTP cannot carry, a URL
                # aiohttp cannot use): no reconnect can help. Its message may quote the value.
                failure = LocalError(
                    f"cannot send the request to {safe_url(self.url)}: {type(exc).__name__} (a "
                    "header value that is not text or holds CR/LF, or a URL aiohttp cannot "
                    "use); not retried"
                )
            except (aiohttp.ClientError, OSError) as exc:
                failure = TransportError(
                    f"cannot connect to {safe_url(self.url)}: {self._reason(exc, headers)}; "
                    "check the base URL and that the server is reachable"
                )
            # Raised outside the ``except``: aiohttp's errors hold the request's headers.
            if failure is not None:
                return failure
            assert response is not None
            sub.opened = True
            if response.status == 204:
                return None
            problem = await self._check(response, headers)
            if problem is not None:
                return problem
            self._state(sub, "open", headers=dict(response.headers))
            if isinstance(sub.observer, FrameObserver):
                sub.observer.on_open()
            watch = self.io_loop.read_watches().watch(response.content, self.timeouts[1])
            try:
                return await self._pump(sub, response, headers)
            finally:
                watch.cancel()
        finally:
            if response is not None:
                response.close()

    async def _check(
        self, response: aiohttp.ClientResponse, headers: Mapping[str, str]
    ) -> Exception | None:
        """The typed error for a response that is no event stream, else None (shared rule)."""
        status = response.status
        ok = is_event_stream(status, response.headers)
        body = "" if ok else await self._body(response, headers)
        return answer_error(status, response.headers, self.url, body)

    async def _body(
        self, response: aiohttp.ClientResponse, headers: Mapping[str, str], limit: int = 4096
    ) -> str:
        # As the threaded source: what has arrived (never a wait to fill ``limit``), with any
        # echo of the key masked before the cut.
        secrets = secrets_of(headers)
        extra = max((len(s.encode("utf-8")) for s in secrets), default=0)
        try:
            raw = await response.content.read(limit + extra)
        except Exception:  # the body is only context for the error: never mask the status
            return ""
        length = response.headers.get("Content-Length", "").strip()
        whole = length.isdigit() and len(length) < 19 and len(raw) >= int(length)
        text = mask_secrets(raw.decode("utf-8", "replace"), secrets, cut=not whole)
        return text if len(raw) <= limit else truncate(text, limit)

    async def _pump(
        self, sub: _Subscription, response: aiohttp.ClientResponse, headers: Mapping[str, str]
    ) -> Exception:
        """Read, decode and deliver until the stream ends; return why it ended."""
        aiohttp = _aiohttp()
        decoder = Decoder(sub.last_event_id, self.max_event_bytes)
        content = response.content
        failure: Exception | None = None
        try:
            while True:
                if content.exception() is None:
                    chunk = await content.read(_READ_BYTES)  # as _read(content), inline
                else:
                    chunk = await _read(content)
                if not chunk:
                    break
                ended = deliver(self, sub, decoder, chunk)
                if ended is not None:
                    return ended
                if sub.disposed:
                    return StreamClosed("disposed")
        except asyncio.TimeoutError:
            failure = ReadTimeout(
                f"no bytes from {safe_url(self.url)} for {self.timeouts[1]:g} s"
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            failure = TransportError(
                f"connection to {safe_url(self.url)} broke: {self._reason(exc, headers)}"
            )
        if failure is not None:
            return failure
        lost = decoder.pending_bytes
        in_event = decoder.in_event
        decoder.close()
        where = "mid-event" if lost or in_event else "at an event boundary"
        log.debug("stream from %s ended %s", safe_url(self.url), where)
        return StreamClosed(
            f"the server closed the stream {where}"
            + (f" ({lost} bytes of an unfinished event discarded)" if lost else "")
        )

    @staticmethod
    def _reason(exc: BaseException, headers: Mapping[str, str]) -> str:
        # aiohttp's messages name the host and port (never headers); mask an echo anyway.
        return mask_secrets(f"{type(exc).__name__}: {exc}", secrets_of(headers))

