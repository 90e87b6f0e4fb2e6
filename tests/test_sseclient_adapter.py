"""``from_sseclient``: an sseclient-py client as an Observable of rxlens events."""

from __future__ import annotations

import threading

import requests
import sseclient
from sse_server import ScriptedServer, sse

from rxlens.errors import StreamClosed
from rxlens.sse import Event, from_sseclient


def test_wraps_an_sseclient_with_sticky_ids() -> None:
    with ScriptedServer() as server:
        server.add(sse(b"id: 1\ndata: a\n\ndata: b\n\nevent: x\nid: 2\ndata: c\n\n"))
        response = requests.get(server.url, stream=True, timeout=5)
        client = sseclient.SSEClient(response)
        items: list[Event] = []
        errors: list[Exception] = []
        done = threading.Event()
        from_sseclient(client).subscribe(
            items.append, lambda e: (errors.append(e), done.set())
        )
        assert done.wait(5)
        assert items == [
            Event("a", "message", "1", "1"),
            Event("b", "message", "1", None),
            Event("c", "x", "2", "2"),
        ]
        assert isinstance(errors[0], StreamClosed)


def test_dispose_closes_the_client() -> None:
    with ScriptedServer() as server:
        server.add(sse(b"data: a\n\n", then="hold"))
        response = requests.get(server.url, stream=True, timeout=5)
        client = sseclient.SSEClient(response)
        got = threading.Event()
        disposable = from_sseclient(client).subscribe(lambda e: got.set())
        assert got.wait(5)
        disposable.dispose()
        assert response.raw.closed
