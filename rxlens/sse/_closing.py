"""``Closer``: what ``LensClient.close()`` ends, wherever its streams are being read.

Why it exists: a client's streams outlive any one connection. Closing the client closed its
HTTP session (and its I/O thread with ``io="asyncio"``), but each subscription's next
reconnect (after a drop, a heartbeat timeout or a back-off) opened a connection again, and
with ``io="asyncio"`` started a new I/O thread: a ``with LensClient() as client:`` block left
streams reading after its end, without a word to their subscribers. Every source a client
makes registers each open connection here; :meth:`Closer.close` ends them all with
:class:`~rxlens.errors.ClientClosed` (not retryable, so ``resume`` ends too), and a source
asked to connect after that fails at once with the same error.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("rxlens.sse")


class Closer:
    """The open connections of one client, and whether it was closed (thread-safe)."""

    __slots__ = ("_closed", "_ends", "_lock", "_order")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._ends: dict[int, Callable[[], None]] = {}
        self._order = itertools.count()

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, end: Callable[[], None]) -> int | None:
        """Register an open connection's ``end``; None when the client is already closed
        (then nothing is registered and the caller must not connect)."""
        with self._lock:
            if self._closed:
                return None
            key = next(self._order)
            self._ends[key] = end
            return key

    def discard(self, key: int | None) -> None:
        """The connection ended on its own: forget it."""
        if key is not None:
            with self._lock:
                self._ends.pop(key, None)

    def close(self) -> None:
        """End every registered connection (each ``end`` once); refuse any later one."""
        with self._lock:
            self._closed = True
            ends = list(self._ends.values())
            self._ends.clear()
        for end in ends:
            try:
                end()
            except Exception:  # one connection that cannot be ended must not keep the others
                log.exception("ending a connection at LensClient.close() raised")


class Waiting:
    """A reconnect waiting out its back-off, registered with the client's ``closer`` meanwhile,
    so that ``LensClient.close()`` ends the wait at once instead of at the next attempt (which
    would then only find the client closed). Used by ``resume`` and the fused preset.

    ``closer`` is the one of the source being resumed (None: a source made without a client,
    and nothing is registered).
    """

    __slots__ = ("_closer", "_key")

    def __init__(self, closer: Closer | None) -> None:
        self._closer = closer
        self._key: int | None = None

    def start(self, end: Callable[[], None]) -> None:
        """The wait begins: ``close()`` calls ``end`` from now on, or calls it at once when the
        client was closed already (no wait for a connection the client would refuse)."""
        if self._closer is None:
            return
        self._key = self._closer.add(end)
        if self._key is None:
            end()

    def stop(self) -> None:
        """The wait is over (the reconnect starts, or the subscription was disposed): forget
        it, so that a long-lived client keeps nothing of it."""
        closer, key = self._closer, self._key
        if closer is not None and key is not None:
            self._key = None
            closer.discard(key)


def closer_of(*sources: object) -> Closer | None:
    """The client's closer behind the first of ``sources`` that has one (a source's
    ``closer``), or None."""
    for source in sources:
        closer = getattr(source, "closer", None)
        if isinstance(closer, Closer):
            return closer
    return None


@contextmanager
def registered(closer: Closer | None, end: Callable[[], None]) -> Iterator[bool]:
    """One connection's time with its client's ``closer`` (None: a source made without one).

    Yields whether the connection may open (False: the client is closed; connect nothing,
    tell the subscriber :class:`~rxlens.errors.ClientClosed`); ``end`` is registered meanwhile
    and forgotten on the way out, however the connection ended.
    """
    if closer is None:
        yield True
        return
    key = closer.add(end)
    try:
        yield key is not None
    finally:
        closer.discard(key)
