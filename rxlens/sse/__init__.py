"""Server-sent events: a spec-exact decoder and a resumable RxPY source.

- :class:`Decoder` turns bytes into :class:`Event` values, with no I/O;
- :func:`connect` is one HTTP connection per subscription, as a cold Observable;
- :func:`resume` reconnects after retryable errors and drops what a resume replays (also in
  :mod:`rxlens.operators`); :func:`stream` is ``connect`` plus ``resume``: it reconnects with
  ``Last-Event-ID`` after any drop and never delivers an event twice;
- :class:`AsyncSSESource` is ``connect`` on one shared asyncio I/O thread (``rxlens[asyncio]``);
- :func:`from_sseclient` wraps an sseclient-py client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reactivex import Observable, abc

from rxlens.retry import RetryPolicy
from rxlens.sse._aio import AsyncSSESource, IOLoop
from rxlens.sse._closing import Closer as Closer
from rxlens.sse._closing import registered as registered
from rxlens.sse._connect import SSESource, connect
from rxlens.sse._decoder import _DEFAULT_MAX_EVENT_BYTES as DEFAULT_MAX_EVENT_BYTES
from rxlens.sse._decoder import Decoder
from rxlens.sse._fused import fused_resume as fused_resume
from rxlens.sse._models import Event
from rxlens.sse._resume import Cursor as Cursor
from rxlens.sse._resume import resume
from rxlens.sse._sseclient import from_sseclient
from rxlens.sse._state import ConnectionState, StateCallback
from rxlens.sse._state import report as report_state
from rxlens.sse._transport import DEFAULT_TIMEOUT, new_session, safe_url

__all__ = [
    "AsyncSSESource",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_TIMEOUT",
    "ConnectionState",
    "Decoder",
    "Event",
    "IOLoop",
    "SSESource",
    "StateCallback",
    "connect",
    "resume",
    "safe_url",
    "from_sseclient",
    "new_session",
    "report_state",
    "stream",
]


def stream(
    url: str,
    policy: RetryPolicy | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    on_state: StateCallback | None = None,
    scheduler: abc.SchedulerBase | None = None,
    **kwargs: Any,
) -> Observable[Event]:
    """A resumable SSE stream: ``connect(url, ...).pipe(resume(policy))``.

    It reconnects after drops and retryable errors with ``Last-Event-ID``, backing off as
    ``policy`` says (default :class:`rxlens.RetryPolicy`), and drops events the server replays.
    ``on_state`` receives every :class:`ConnectionState` change, from the connection and from
    the back-off. Other keyword arguments go to :func:`connect`.

    >>> import rxlens.sse
    >>> events = rxlens.sse.stream("http://127.0.0.1:8765/api/lens/sessions/consumer/lsn-1",
    ...                            headers={"Authorization": "Bearer KEY"})
    """
    import reactivex

    def one_subscription(_scheduler: abc.SchedulerBase | None = None) -> Observable[Event]:
        # A source per subscription: its cursor (Last-Event-ID) is never shared.
        source = connect(url, headers=headers, on_state=on_state, **kwargs)
        return source.pipe(resume(policy, cursor=source, on_state=on_state, scheduler=scheduler))

    return reactivex.defer(one_subscription)
