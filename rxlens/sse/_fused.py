"""``fused_resume``: a frame step, ``heartbeat_timeout``, ``resume`` and an end, in one observer.

Why it exists: ``client.events()`` composes ``connect -> typed + heartbeat_timeout -> resume ->
until_end``. Composed, every event crosses four Rx observers (each with its auto-detaching
wrapper), two locks and three stop checks, which on a busy stream costs more than decoding the
event. Here the same steps run as one observer per connection and one lock per subscription,
and an SSE source hands it each read chunk's frames as one list (:class:`FrameObserver`), so
a frame costs one loop iteration instead of a chain of calls.

The composed operators stay the reference (:func:`rxlens.sse.resume`,
:func:`rxlens.operators.heartbeat_timeout`, :func:`rxlens.operators.until_end`): this module
repeats their rules, not their code, and a property test holds the two equal in virtual time
(same items, errors, states, notes and times). A rule changed there must change here too.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar, cast

from reactivex import Observable, abc, typing
from reactivex.disposable import Disposable, SerialDisposable, SingleAssignmentDisposable
from reactivex.observer.autodetachobserver import AutoDetachObserver
from reactivex.scheduler import TimeoutScheduler, VirtualTimeScheduler

from rxlens._timers import (
    RETRY_HAND_OFF,
    SharedTimer,
    SharedTimers,
    off_timer_thread,
    shared_timers,
)
from rxlens.errors import (
    ClientClosed,
    EventIdTooLong,
    HeartbeatTimeout,
    LocalError,
    is_downstream,
    mark_downstream,
)
from rxlens.retry import RetryPolicy
from rxlens.sse._aio import AsyncSSESource
from rxlens.sse._closing import Waiting, closer_of
from rxlens.sse._connect import SSESource
from rxlens.sse._delivery import FrameObserver
from rxlens.sse._models import Event
from rxlens.sse._resume import (
    DEFAULT_REMEMBER,
    DEFAULT_REMEMBER_BYTES,
    ENTRY_OVERHEAD,
    MAX_ID_LENGTH,
    Cursor,
    _content,
    _decide,
    _final_error,
    _Memory,
    _numeric_before,
    _report,
    _show,
    _size,
    _State,
    _went_back_note,
)
from rxlens.sse._state import StateCallback, StateKind
from rxlens.sse._transport import safe_url

_T = TypeVar("_T")

# The composed operators' loggers: the fused preset says the same things under the same names.
log = logging.getLogger("rxlens.resume")


def fused_resume(
    step: Callable[[abc.SchedulerBase | None], Callable[[Event], _T | None]],
    *,
    step_errors: tuple[type[Exception], ...] = (),
    seconds: float | None,
    heartbeat_scheduler: abc.SchedulerBase | None = None,
    end_type: type[_T] | None = None,
    only: type[Any] | None = None,
    policy: RetryPolicy | None = None,
    cursor: Cursor | None = None,
    remember: int = DEFAULT_REMEMBER,
    remember_bytes: int = DEFAULT_REMEMBER_BYTES,
    max_id_length: int = MAX_ID_LENGTH,
    on_state: StateCallback | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[Event]], Observable[_T]]:
    """``step`` -> ``heartbeat_timeout(seconds, heartbeat_scheduler)`` -> ``resume(policy, ...)``
    -> an inclusive end at the first item of ``end_type``, as one operator.

    ``step(subscription's scheduler)`` gives the function that turns one frame into its item
    (``None`` drops the frame without re-arming the heartbeat; an exception of one of the
    ``step_errors`` types fails the connection with that exception, as ``typed(on_malformed=
    "raise")`` does). ``seconds=None`` leaves the heartbeat out. The other
    arguments are :func:`rxlens.sse.resume`'s, with its rules: replays after a reconnect
    dropped, ids going back delivered with a note and a warning, the subscriber's own
    exceptions never retried, every state in the subscription. On the end item the stream
    completes and the connection is disposed (``until_end()``). ``only`` passes on only the
    items of that type, as a filter after the operator would (every item still counts for
    the heartbeat, resume and the end), without the filter's observer per item.

    When the source is an :class:`SSESource` or :class:`AsyncSSESource`, it delivers each read
    chunk's frames at once (:class:`FrameObserver`) and this operator advances the source's
    cursor frame by frame, as the source would.

    Marble (drop at ``x``, policy delay 2; ``e`` the end)::

        upstream 1st:     -1-2-x
        upstream 2nd:             -2-3-e-
        fused_resume():   -1-2--------3-(e|)

    Raises:
        ValueError: ``seconds`` is not positive, ``remember`` or ``remember_bytes`` is
            negative, or ``max_id_length`` is not positive.
    """
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if remember < 0:
        raise ValueError("remember must not be negative")
    if remember_bytes < 0:
        raise ValueError("remember_bytes must not be negative")
    if max_id_length < 1:
        raise ValueError("max_id_length must be positive")
    chosen = policy if policy is not None else RetryPolicy()

    def operator(source: Observable[Event]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], sub_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            run: _Run[_T] = _Run(
                source,
                observer,
                sub_scheduler,
                step(sub_scheduler),
                step_errors,
                seconds,
                heartbeat_scheduler,
                end_type,
                only,
                chosen,
                cursor,
                _Memory(remember, remember_bytes),
                max_id_length,
                on_state,
                scheduler,
            )
            run.connect()
            return Disposable(run.dispose)

        return Observable(subscribe)

    return operator


class _NeverStopped:
    """Stands for an auto-detaching observer's flag where the observer is another kind."""

    __slots__ = ()
    is_stopped = False


_NEVER_STOPPED = _NeverStopped()


class _Link(FrameObserver):
    """One connection of a subscription: what ``heartbeat_timeout`` keeps per connection."""

    __slots__ = (
        "disposed",
        "generation",
        "last",
        "run",
        "shared_timer",
        "stopped",
        "subscription",
        "timer",
        "waiting",
    )

    def __init__(self, run: _Run[Any], generation: int, last: float) -> None:
        self.run = run
        self.generation = generation
        self.stopped = False  # the heartbeat's: a terminal notification went through
        self.disposed = False  # the connection's: nothing more is delivered from it
        self.last = last
        # True while the source opens the connection: its own timeouts bound that (connect,
        # the response head), and a wait in the client's queue of connections to open (10,000
        # sessions on one I/O thread) is no silence of the server, so the heartbeat waits.
        self.waiting = False
        self.timer = SerialDisposable()
        #: The heartbeat's timer on the shared timers, set again after each silence period.
        self.shared_timer: SharedTimer | None = None
        self.subscription = SingleAssignmentDisposable()

    def dispose(self) -> None:
        self.disposed = True
        self.subscription.dispose()
        self.timer.dispose()

    # -- from the source ------------------------------------------------------------------------

    def on_frames(self, frames: Sequence[Event]) -> bool:
        return self.run.frames(self, frames, self.run.chunked)

    def on_next(self, value: Event) -> None:
        # From an ordinary source, which moved its own cursor.
        self.run.frames(self, (value,), None)

    def on_connecting(self) -> None:
        self.waiting = True

    def on_open(self) -> None:
        # The heartbeat counts from here (the timer thread reads ``last`` without the lock: a
        # float swapped whole; at worst it re-arms once more).
        self.last = self.run.hclock()
        self.waiting = False

    # The connection is disposed after a terminal notification even when the subscriber's own
    # on_error or on_completed raises (as an auto-detaching observer does).

    def on_error(self, error: Exception) -> None:
        self._end(lambda: self.run.failed(self, error))

    def on_completed(self) -> None:
        self._end(lambda: self.run.completed(self))

    def _end(self, step: Callable[[], None]) -> None:
        with self.run.lock:
            if self.stopped:
                return
            self.stopped = True
            self.timer.dispose()
            try:
                step()
            finally:
                self.dispose()


class _Run(Generic[_T]):
    """One subscription of :func:`fused_resume`."""

    def __init__(
        self,
        source: Observable[Event],
        observer: abc.ObserverBase[_T],
        sub_scheduler: abc.SchedulerBase | None,
        step: Callable[[Event], _T | None],
        step_errors: tuple[type[Exception], ...],
        seconds: float | None,
        heartbeat_scheduler: abc.SchedulerBase | None,
        end_type: type[_T] | None,
        only: type[Any] | None,
        policy: RetryPolicy,
        cursor: Cursor | None,
        memory: _Memory,
        max_id_length: int,
        on_state: StateCallback | None,
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        self.source = source
        # An SSE source delivers whole chunks to a FrameObserver subscribed to it directly.
        self.chunked: SSESource | AsyncSSESource | None = (
            source if isinstance(source, (SSESource, AsyncSSESource)) else None
        )
        self.observer = observer
        self.sub_scheduler = sub_scheduler
        self.step = step
        self.step_errors = step_errors
        self.seconds = seconds
        self.end_type = end_type
        self.only = only
        self.policy = policy
        self.cursor = cursor
        self.memory = memory
        # The id length up to which ``memory._count`` entries fit ``memory._budget`` (see
        # frames), and whether the memory's bytes are counted (from the first longer id).
        self.fits = memory._budget // memory._count - ENTRY_OVERHEAD if memory._count else -1
        self.counting = False
        self.max_id_length = max_id_length
        self.on_state = on_state
        self.sched = scheduler or sub_scheduler or TimeoutScheduler.singleton()
        self.hsched = heartbeat_scheduler or sub_scheduler or shared_timers()
        hsched = self.hsched
        # As heartbeat_timeout: a virtual-time scheduler is its own clock, else time.monotonic.
        self.hclock: Callable[[], float] = (
            (lambda: float(hsched.to_seconds(hsched.now)))
            if isinstance(hsched, VirtualTimeScheduler)
            else time.monotonic
        )
        self.shared = isinstance(hsched, SharedTimers)
        self.fire_action: typing.ScheduledAction[_Link] = self._fire_action  # bound once
        # One re-entrant lock for the heartbeat's and resume's (always taken in that order).
        self.lock = threading.RLock()
        self.state = _State()
        self.upstream = SerialDisposable()
        self.retry_timer = SerialDisposable()
        self.ended = False  # until_end's: the end went through
        # While a reconnect waits: its registration with the client's Closer (the source's
        # ``closer``), so that LensClient.close() ends the wait at once, not at the next attempt.
        self.waiting = Waiting(closer_of(source))

    # -- resume ---------------------------------------------------------------------------------

    def now(self) -> float:
        return float(self.sched.to_seconds(self.sched.now))

    def where(self) -> tuple[str, str]:
        if self.cursor is None:
            return "", self.state.last_id
        return safe_url(self.cursor.url), self.cursor.last_event_id

    def tell(
        self,
        kind: StateKind,
        attempt: int = 0,
        delay: float | None = None,
        error: Exception | None = None,
        note: str = "",
    ) -> None:
        _report(self.on_state, kind, self.where, self.now(), attempt, delay, error, note)

    def went_back(self, key: Hashable) -> None:
        note = _went_back_note(self.state.resumed_from, key)
        log.warning("%s", note)
        warnings.warn(note, UserWarning, stacklevel=2)
        self.tell("open", note=note)

    def fail(self, error: Exception) -> None:
        self.state.done = True
        self.upstream.dispose()
        self.end_error(error)

    def connect(self) -> None:
        """Open the next connection (``resume``'s subscribe_upstream, ``heartbeat_timeout``'s
        subscribe)."""
        state = self.state
        self.waiting.stop()
        with self.lock:
            if state.done:
                return
            state.generation += 1
            generation = state.generation
            state.first_at = None
            if generation > 1:
                # The window in which the server may send again what it sent before.
                state.resumed_from = self.where()[1]
                state.window = self.memory.window()
            link = _Link(self, generation, self.hclock())
            if self.seconds is not None:
                self.arm(link, self.seconds)
        if self.chunked is not None:
            # Directly, not through subscribe(): the link is its own auto-detaching observer,
            # and an SSE source hands a FrameObserver whole chunks.
            try:
                subscription = self.chunked._subscribe_core(link, self.sub_scheduler)
            except Exception as exc:  # as subscribe() does: the failure is the stream's
                link.on_error(exc)
                subscription = Disposable()
        else:
            subscription = self.source.subscribe(link, scheduler=self.sub_scheduler)
        link.subscription.disposable = subscription
        with self.lock:
            if generation == state.generation and not state.done:
                self.upstream.disposable = Disposable(link.dispose)
                return
        link.dispose()

    def failed(self, link: _Link, error: Exception) -> None:
        """A connection failed (``resume``'s on_error); the caller holds the lock."""
        state = self.state
        if link.generation != state.generation or state.done:
            return
        if is_downstream(error):
            state.done = True
            self.end_error(error)
            return
        decision = _decide(self.policy, state, error, self.now())
        if isinstance(decision, LocalError):  # the policy failed
            state.done = True
            self.end_error(decision)
            return
        state.retry = decision.state
        if not decision.retry:
            state.done = True
            final = _final_error(self.policy, decision, error, self.now())
            self.tell("failed", decision.state.attempt, None, error)
            log.info("giving up: %s (%s)", decision.reason, error)
            self.end_error(final)
            return
        self.tell("backing_off", decision.state.attempt, decision.delay, error)
        log.info("reconnecting in %.2f s (%s): %s", decision.delay, decision.reason, error)
        self.upstream.disposable = Disposable()  # drop the failed connection
        self.retry_timer.disposable = self.sched.schedule_relative(
            decision.delay, lambda _s, _st: self.connect()
        )
        self.waiting.start(self.client_closed)

    def client_closed(self) -> None:
        """LensClient.close() while a reconnect waits: end now with ClientClosed."""
        self.retry_timer.dispose()
        with self.lock:
            state = self.state
            if state.done:
                return
            state.done = True
            self.end_error(ClientClosed())

    def completed(self, link: _Link) -> None:
        state = self.state
        if link.generation != state.generation or state.done:
            return
        state.done = True
        if not self.ended:
            self.observer.on_completed()

    def dispose(self) -> None:
        # No lock: a subscriber blocked in on_next must not delay disposal.
        self.state.done = True
        self.retry_timer.dispose()
        self.waiting.stop()  # the client's Closer must not keep a disposed subscription
        self.upstream.dispose()

    # -- until_end ------------------------------------------------------------------------------

    def end_error(self, error: Exception) -> None:
        if not self.ended:
            self.observer.on_error(error)

    # -- heartbeat_timeout ----------------------------------------------------------------------

    def arm(self, link: _Link, delay: float) -> None:
        # On the shared timers, a connection's timer is made once and set again after each
        # silence period: nothing is made per re-arm (see rxlens._timers.SharedTimer for why
        # the objects per timer count at 10,000 sessions). The action is made once per
        # subscription and the link is its state. Disposing ``link.timer`` cancels the timer
        # for good, so a later reschedule does nothing.
        timer = link.shared_timer
        if timer is not None:
            cast(SharedTimers, self.hsched).reschedule(timer, delay)
            return
        made = self.hsched.schedule_relative(delay, self.fire_action, link)
        if self.shared:
            link.shared_timer = cast(SharedTimer, made)
        link.timer.disposable = made

    def _fire_action(self, _scheduler: abc.SchedulerBase, link: _Link | None) -> None:
        assert link is not None  # arm() always passes it
        self.fire(link)

    def fire(self, link: _Link) -> None:
        # On the shared timer thread, fire must not wait for the lock (a slow on_next holds
        # it) nor run on_error: it re-arms if a frame came, and hands the timeout itself to a
        # thread of its own, where expire checks again under the lock.
        if not self.shared:
            self.expire(link)
            return
        if link.stopped:
            return
        assert self.seconds is not None
        if link.waiting:
            self.arm(link, self.seconds)
            return
        remaining = self.seconds - (self.hclock() - link.last)
        if remaining > 1e-9:
            self.arm(link, remaining)
            return
        if not off_timer_thread(lambda: self.expire(link)):
            self.arm(link, min(self.seconds, RETRY_HAND_OFF))  # late, never lost

    def expire(self, link: _Link) -> None:
        seconds = self.seconds
        assert seconds is not None
        with self.lock:
            if link.stopped:
                return
            if link.waiting:
                self.arm(link, seconds)
                return
            now = self.hclock()
            remaining = seconds - (now - link.last)
            if remaining > 1e-9:
                self.arm(link, remaining)
                return
            link.stopped = True
            hsched = self.hsched
            seconds_now = float(hsched.to_seconds(hsched.now))
            try:
                self.failed(link, HeartbeatTimeout(seconds, seconds_now - (now - link.last)))
            finally:
                link.dispose()

    # -- the frames ---------------------------------------------------------------------------

    def frames(
        self, link: _Link, frames: Sequence[Event], source: SSESource | AsyncSSESource | None
    ) -> bool:
        """Frames through every step, in order; ``source``: the cursor to move per frame.
        Returns True when the connection was disposed with frames left.

        The hot path of the preset, hence one loop with its lookups hoisted, under the lock
        once per chunk: the frames of a chunk arrived together, so a heartbeat that fires while
        they are handled finds them (each frame re-arms it) and is decided after them. Whoever
        waits for the lock (the heartbeat, a reconnect) waits at most for one chunk's frames,
        as it waits for one slow ``on_next``; disposal takes no lock and stops the chunk at
        the next frame.
        """
        lock = self.lock
        step = self.step
        step_errors = self.step_errors
        hclock = self.hclock
        state = self.state
        observer = self.observer
        # The auto-detaching observer subscribe() wraps around the subscriber only checks its
        # is_stopped before calling the subscriber's function: the loop checks it and calls
        # the function itself (a call less per item). Any other observer is called as it is.
        detached: Any = _NEVER_STOPPED
        on_next: Callable[[Any], None] = observer.on_next
        if type(observer) is AutoDetachObserver:
            detached = observer
            on_next = observer._on_next
        end_type = self.end_type
        only = self.only
        max_id_length = self.max_id_length
        memory = self.memory
        order = memory._order
        remember = memory._count
        budget = memory._budget
        fits = self.fits
        generation = link.generation
        with lock:
            for frame in frames:
                if source is not None:
                    # The source's own per-frame work: stop once disposed, move the cursor.
                    if link.disposed:
                        return True
                    source.last_event_id = frame[2]
                # heartbeat_timeout (and the typed step under its lock)
                if link.stopped:
                    continue
                try:
                    item = step(frame)
                except step_errors as error:
                    link.stopped = True
                    link.timer.dispose()
                    try:
                        self.failed(link, error)
                    finally:
                        link.dispose()
                    continue  # the next frame finds the connection disposed
                if item is None:
                    continue
                # The silence is measured from the frame's arrival.
                link.last = hclock()
                # resume
                if generation != state.generation or state.done:
                    continue
                if state.first_at is None:
                    state.first_at = self.now()
                # getattr(item, "id", None), without the call where the item has one.
                try:
                    key = item.id  # type: ignore[attr-defined]
                except AttributeError:
                    key = None
                if key is not None:
                    text = isinstance(key, str)
                    if text and len(key) > max_id_length:
                        self.fail(EventIdTooLong(max_id_length, len(key)))
                        continue
                    try:
                        raw = item.raw  # type: ignore[attr-defined]
                    except AttributeError:
                        raw = None
                    content = hash(raw) if raw.__class__ is str else _content(item)
                    window = state.window
                    if window is not None:
                        if (key, content) in window.pairs:
                            log.debug("dropped a replayed event (id %s)", _show(str(key)))
                            if key == state.resumed_from:
                                state.window = None  # the replay reached the cursor
                            continue
                        state.window = None
                        if key in window.ids or (
                            text and _numeric_before(key, state.resumed_from)
                        ):
                            self.went_back(key)
                    # memory.add(key, content), inline: the per-event cost of resume.
                    if remember:
                        if len(order) >= remember:
                            gone = order.popleft()[0]  # _size(gone), inline
                            if self.counting:
                                memory._bytes -= ENTRY_OVERHEAD + (
                                    len(gone) if isinstance(gone, str) else 0
                                )
                        order.append((key, content))
                        # While every id is a str of at most ``fits`` characters, the memory's
                        # ``remember`` entries fit its byte budget, which never binds: the
                        # bytes are counted from the first id that breaks this.
                        if not self.counting and (key.__class__ is not str or len(key) > fits):
                            self.counting = True
                            memory._bytes = sum(_size(old) for old, _ in order) - _size(key)
                        if self.counting:
                            held = memory._bytes + ENTRY_OVERHEAD + (
                                len(key) if isinstance(key, str) else 0
                            )
                            while held > budget and order:
                                held -= _size(order.popleft()[0])
                            memory._bytes = held
                    if text:
                        state.last_id = key
                # until_end, then the subscriber
                try:
                    if end_type is None or not isinstance(item, end_type):
                        if (only is None or isinstance(item, only)) and not detached.is_stopped:
                            on_next(item)
                    elif not self.ended:
                        self.ended = True
                        if (only is None or isinstance(item, only)) and not detached.is_stopped:
                            on_next(item)
                        observer.on_completed()
                        self.dispose()
                except Exception as exc:
                    self.fail(mark_downstream(exc))
        return False
