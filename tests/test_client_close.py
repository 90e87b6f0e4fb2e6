"""``LensClient.close()`` ends every stream of the client, for both ``io`` values and the mailbox.

Before, closing the client (or leaving its ``with`` block) closed its HTTP session, but each
subscription's next reconnect opened a connection again (with ``io="asyncio"``, on a new I/O
thread), and no subscriber was told. Against the emulator on loopback: the subscriber gets
``ClientClosed``, the server sees the connection go and no new one, no reader or I/O thread
is left, and a stream subscribed after ``close()`` fails at once without connecting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sinks import Sink, subscribe

from rxlens import LensClient, RetryPolicy
from rxlens.emulator import Faults, LensEmulator
from rxlens.errors import ClientClosed, RxLensError
from rxlens.mailbox import PollPolicy
from rxlens.operators import resume

KEY = "close-secret-key-0123456789"
IO = ["threads", "asyncio"]
READERS = ("rxlens-sse-reader", "rxlens-aio", "rxlens-mailbox-reader")


def reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(READERS)]


def eventually(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture()
def emu() -> Iterator[LensEmulator]:
    with LensEmulator(api_key=KEY, heartbeat_interval=0.1, idle_timeout=30) as emulator:
        yield emulator


@pytest.mark.parametrize("io", IO)
def test_close_ends_an_open_stream_and_nothing_reconnects(emu: LensEmulator, io: Any) -> None:
    client = LensClient(api_key=KEY, base_url=emu.base_url, io=io)
    sid = emu.create_session()
    # A heartbeat timeout shorter than the wait below: before the fix, the stream timed out
    # after close() and reconnected, again and again.
    sink, _ = subscribe(client.events(sid, heartbeat_timeout=0.3, policy=RetryPolicy.immediate()))
    emu.wait_readers(sid, 1)
    client.close()
    sink.wait(5)
    assert isinstance(sink.error, ClientClosed), repr(sink.error)
    assert not sink.error.retryable and isinstance(sink.error, RxLensError)
    emu.wait_until(sid, lambda s: s.readers_open == 0)
    connections = emu.session_stats(sid).connections
    time.sleep(1.0)  # three heartbeat timeouts
    assert emu.session_stats(sid).connections == connections == 1
    eventually(lambda: not reader_threads())


@pytest.mark.parametrize("io", IO)
def test_a_stream_subscribed_after_close_fails_at_once(emu: LensEmulator, io: Any) -> None:
    sid = emu.create_session()
    with LensClient(api_key=KEY, base_url=emu.base_url, io=io) as client:
        pass
    sink, _ = subscribe(client.connect(sid))
    sink.wait(5)
    assert isinstance(sink.error, ClientClosed), repr(sink.error)
    sink, _ = subscribe(client.events(sid, check_channel=False))
    sink.wait(5)
    assert isinstance(sink.error, ClientClosed), repr(sink.error)
    assert emu.session_stats(sid).connections == 0
    eventually(lambda: not reader_threads())


#: How the waiting stream is made: ``client.events()`` (the fused preset), or composed by hand
#: on ``client.connect()`` with the ``resume`` operator (its cursor the source).
HOW = ["events", "composed"]


def waiting_to_reconnect(
    emu: LensEmulator, io: Any, how: str = "events"
) -> tuple[LensClient, str, Sink, Any]:
    """A stream dropped after its first result, waiting 30 s to reconnect."""
    client = LensClient(api_key=KEY, base_url=emu.base_url, io=io)
    sid = emu.create_session(faults=Faults(drop_after=1, drops=1))
    policy = RetryPolicy(base=30.0, cap=30.0, jitter=0.0, max_attempts=5)
    states: list[Any] = []
    if how == "events":
        stream = client.events(sid, policy=policy, on_state=states.append)
    else:
        source = client.connect(sid)
        stream = source.pipe(resume(policy, cursor=source, on_state=states.append))
    sink, subscription = subscribe(stream)
    emu.wait_readers(sid, 1)
    emu.push_many(sid, [{"type": "inference.result", "event_data": {"response": ["r"]}}] * 2)
    eventually(lambda: [s.kind for s in states][-1:] == ["backing_off"])  # the drop was seen
    return client, sid, sink, subscription


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("io", IO)
def test_a_stream_waiting_to_reconnect_ends_at_once(emu: LensEmulator, io: Any, how: str) -> None:
    # The back-off is 30 s: the stream must end now, not at its next attempt.
    client, sid, sink, _ = waiting_to_reconnect(emu, io, how)
    started = time.monotonic()
    client.close()  # during the 30 s back-off
    sink.wait(5)
    assert isinstance(sink.error, ClientClosed), repr(sink.error)
    assert time.monotonic() - started < 5
    assert emu.session_stats(sid).connections == 1
    eventually(lambda: not reader_threads())


def test_close_ends_a_mailbox_stream(emu: LensEmulator) -> None:
    client = LensClient(api_key=KEY, base_url=emu.base_url)
    sid = emu.create_session("manual", channel="mailbox")
    poll = PollPolicy(min_interval=0.01, max_interval=0.05)
    sink, _ = subscribe(client.events(sid, channel="mailbox", poll=poll))
    eventually(lambda: "rxlens-mailbox-reader" in reader_threads())
    client.close()
    sink.wait(5)
    assert isinstance(sink.error, ClientClosed), repr(sink.error)
    eventually(lambda: not reader_threads())


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("io", IO)
def test_the_client_keeps_nothing_of_a_stream_disposed_while_it_waits(
    emu: LensEmulator, io: Any, how: str
) -> None:
    # A long-lived client must not hold on to every subscription that ever waited to
    # reconnect: disposing one takes it out of what close() would end.
    client, _sid, sink, subscription = waiting_to_reconnect(emu, io, how)
    assert len(client._closer._ends) == 1  # the wait is registered
    subscription.dispose()
    assert len(client._closer._ends) == 0
    client.close()
    assert sink.error is None  # disposed: nobody is told
