"""``rxlens.aio``: ``async for`` and ``await`` on thread-fed Observables wake the loop at once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable

from rxlens.aio import EmptyStream, iterate, to_future
from rxlens.emulator import LensEmulator
from rxlens.events import InferenceResult
from rxlens.operators import only_results, typed, until_end
from rxlens.sse import connect


def thread_fed(
    items: list[Any], delay: float = 0.0, error: Exception | None = None
) -> tuple[Observable[Any], dict[str, Any]]:
    """An Observable that emits ``items`` from its own thread, ``delay`` seconds apart."""
    seen: dict[str, Any] = {"disposed": threading.Event(), "threads": []}

    def subscribe(observer: abc.ObserverBase[Any], _: abc.SchedulerBase | None = None) -> Any:
        stop = threading.Event()

        def run() -> None:
            for item in items:
                if stop.wait(delay):
                    return
                observer.on_next(item)
            if stop.wait(delay):
                return
            if error is not None:
                observer.on_error(error)
            else:
                observer.on_completed()

        thread = threading.Thread(target=run, daemon=True)
        seen["threads"].append(thread)
        thread.start()

        def dispose() -> None:
            stop.set()
            seen["disposed"].set()

        return Disposable(dispose)

    return reactivex.create(subscribe), seen


def test_await_wakes_when_the_thread_completes_not_at_a_timeout() -> None:
    source, _ = thread_fed([1, 2, 3], delay=0.05)

    async def main() -> tuple[Any, float]:
        started = time.monotonic()
        value = await asyncio.wait_for(to_future(source), timeout=5)
        return value, time.monotonic() - started

    value, took = asyncio.run(main())
    assert value == 3
    assert took < 1.0  # 4 x 0.05 s of emitting; a missed wake-up would wait for the timeout


def test_await_raises_the_stream_error_and_empty_streams() -> None:
    failing, _ = thread_fed([1], delay=0.01, error=ValueError("boom"))
    empty, _ = thread_fed([], delay=0.01)

    async def main() -> None:
        with pytest.raises(ValueError, match="boom"):
            await to_future(failing)
        with pytest.raises(EmptyStream):
            await to_future(empty)

    asyncio.run(main())


def test_cancelling_the_future_disposes_the_subscription() -> None:
    source, seen = thread_fed([1] * 1000, delay=0.05)

    async def main() -> None:
        future = to_future(source)
        await asyncio.sleep(0.1)
        future.cancel()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert seen["disposed"].wait(2)


def test_async_for_yields_every_item_in_order_from_the_thread() -> None:
    source, seen = thread_fed(list(range(20)), delay=0.005)

    async def main() -> list[int]:
        return [item async for item in iterate(source)]

    assert asyncio.run(main()) == list(range(20))
    assert seen["disposed"].is_set()  # disposed at the end, too


def test_leaving_the_loop_early_disposes_and_errors_propagate() -> None:
    source, seen = thread_fed(list(range(1000)), delay=0.01)
    failing, _ = thread_fed([1, 2], delay=0.01, error=RuntimeError("dropped"))

    async def main() -> tuple[list[int], list[int]]:
        first: list[int] = []
        async for item in iterate(source):
            first.append(item)
            if len(first) == 3:
                break
        got: list[int] = []
        with pytest.raises(RuntimeError, match="dropped"):
            async for item in iterate(failing):
                got.append(item)
        return first, got

    first, got = asyncio.run(main())
    assert first == [0, 1, 2] and got == [1, 2]
    assert seen["disposed"].wait(2)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(), max_size=30))
def test_async_for_equals_the_synchronous_items(items: list[int]) -> None:
    async def main() -> list[int]:
        return [item async for item in iterate(reactivex.from_iterable(items))]

    assert asyncio.run(main()) == items


def test_a_live_emulator_stream_in_an_event_loop() -> None:
    with LensEmulator(heartbeat_interval=0.2) as emu:
        sid = emu.create_session("machine-state", rate=0, seed=4)
        stream = connect(emu.consumer_url(sid), headers=emu.headers).pipe(
            typed(), until_end(), only_results()
        )

        async def main() -> tuple[list[str | None], Any]:
            labels: list[str | None] = []

            async def drive() -> None:
                await asyncio.to_thread(emu.wait_readers, sid, 1, 5.0)
                emu.step(sid, 5)
                emu.destroy(sid)

            driver = asyncio.create_task(drive())
            async for event in iterate(stream):
                assert isinstance(event, InferenceResult)
                labels.append(event.label)
            await driver
            last = await to_future(reactivex.of(1, 2).pipe(ops.last()))
            return labels, last

        labels, last = asyncio.run(asyncio.wait_for(main(), 20))
    assert len(labels) == 5 and last == 2
