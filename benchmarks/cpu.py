"""``python -m benchmarks.cpu``: CPU per event of the typed pipeline, no sockets, no threads.

Why it exists: over loopback on a loaded machine the throughput ratios drift by +-0.1 from run
to run, too much to tell a 5 % change. This harness feeds the same pre-built 64 KiB bodies of
Lens result frames (:mod:`benchmarks.frames`, the bytes the throughput benchmark sends) to
each contender's per-chunk work in one thread, and measures ``time.process_time`` (best of
``--rounds``), with the pure-Python limit (split + ``json.loads``) computed in the same run:

- ``limit``: split each body into frames, ``json.loads`` each, check its type;
- ``raw``: rxlens's ``Decoder`` and the SSE source's delivery to a plain observer;
- ``raw+json``: the same, the subscriber decoding each frame's JSON with ``json.loads`` and
  checking its type;
- ``raw+.json()``: the same with ``frame.json()``, as the loopback benchmark's raw-frames
  subscriber does (the one to compare with the limit);
- ``composed``: ``connect -> typed -> heartbeat_timeout -> resume -> until_end ->
  only_results``, the composed operators;
- ``fused``: what ``client.events(sid).pipe(only_results())`` runs: the fused preset fed a
  chunk at a time, then ``only_results()``.

The socket, the HTTP chunk framing and the reader thread are left out (they cost the same for
every contender), so the ratios here are higher than over loopback.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from benchmarks.frames import BULK_FRAMES, RESULT, result

Run = Callable[[list[bytes]], int]


def bodies(count: int) -> list[bytes]:
    """``count`` result frames as bodies of :data:`BULK_FRAMES` frames (about 64 KiB each)."""
    return [
        b"".join(result(i) for i in range(lo, min(lo + BULK_FRAMES, count + 1)))
        for lo in range(1, count + 1, BULK_FRAMES)
    ]


def limit(chunks: list[bytes]) -> int:
    loads = json.loads
    n = 0
    rest = b""
    for chunk in chunks:
        text = rest + chunk
        cut = text.rfind(b"\n\n")
        rest = text[cut + 2 :]
        for frame in text[:cut].decode("utf-8", "replace").split("\n\n"):
            payload = loads(frame[frame.find("data: ") + 6 :])
            if payload["type"] == RESULT:
                n += 1
    return n


class _Source:
    """An :class:`rxlens.sse.SSESource` whose subscription is fed by hand, chunk by chunk."""

    def __init__(self) -> None:
        from rxlens.sse import SSESource

        self.sse = SSESource("http://127.0.0.1:1/lens/sessions/consumer/lsn-cpu")
        self.observers: list[Any] = []

        def subscribe(observer: Any, scheduler: Any = None) -> Any:
            from reactivex.disposable import Disposable

            self.observers.append(observer)
            return Disposable()

        self.sse._subscribe_core = subscribe  # type: ignore[method-assign]

    def feed(self, chunks: list[bytes]) -> None:
        from rxlens.sse import Decoder
        from rxlens.sse._delivery import deliver

        decoder = Decoder()
        observer = self.observers[-1]
        sse = self.sse

        def stopped() -> bool:
            return False

        for chunk in chunks:
            ended = deliver(decoder.feed(chunk), observer, sse, stopped)
            if ended is not None:
                raise ended
            sse.last_event_id = decoder.last_event_id


def _counting(pipeline: Callable[[Any], Any]) -> Run:
    def run(chunks: list[bytes]) -> int:
        source = _Source()
        count = [0]

        def on_next(_item: Any) -> None:
            count[0] += 1

        def on_error(error: Exception) -> None:
            raise error

        subscription = pipeline(source.sse).subscribe(on_next, on_error)
        source.feed(chunks)
        subscription.dispose()
        return count[0]

    return run


def _raw(sse: Any) -> Any:
    return sse


def _raw_decoding(method: bool) -> Run:
    """Raw frames, the subscriber decoding each frame's JSON with ``frame.json()`` (``method``)
    or its own ``json.loads(frame.data)``, and checking its type."""

    def run(chunks: list[bytes]) -> int:
        source = _Source()
        loads = json.loads
        count = [0]

        def on_json(frame: Any) -> None:
            if frame.json()["type"] == RESULT:
                count[0] += 1

        def on_loads(frame: Any) -> None:
            if loads(frame.data)["type"] == RESULT:
                count[0] += 1

        def on_error(error: Exception) -> None:
            raise error

        subscription = source.sse.subscribe(on_json if method else on_loads, on_error)
        source.feed(chunks)
        subscription.dispose()
        return count[0]

    return run


def _composed(sse: Any) -> Any:
    from rxlens.operators import heartbeat_timeout, only_results, resume, typed, until_end

    return sse.pipe(
        typed(), heartbeat_timeout(15.0), resume(cursor=sse), until_end(), only_results()
    )


def _fused(sse: Any) -> Any:
    from rxlens.operators import events_preset, only_results

    return sse.pipe(events_preset(heartbeat_timeout=15.0, cursor=sse), only_results())


CONTENDERS: dict[str, Run] = {
    "limit": limit,
    "raw": _counting(_raw),
    "raw+json": _raw_decoding(method=False),
    "raw+.json()": _raw_decoding(method=True),
    "composed": _counting(_composed),
    "fused": _counting(_fused),
}


def measure(run: Run, chunks: list[bytes], expected: int, rounds: int) -> float:
    """Best CPU seconds of ``rounds`` runs."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        got = run(chunks)
        spent = time.process_time() - start
        if got != expected:
            raise RuntimeError(f"{got} events, expected {expected}")
        best = min(best, spent)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--only", nargs="*", choices=sorted(CONTENDERS))
    args = parser.parse_args(argv)
    chunks = bodies(args.events)
    chosen = args.only or list(CONTENDERS)
    if "limit" not in chosen:
        chosen.insert(0, "limit")
    # Interleaved rounds: a burst of load on the machine hits every contender alike.
    best = dict.fromkeys(chosen, float("inf"))
    for _ in range(args.rounds):
        for key in chosen:
            best[key] = min(best[key], measure(CONTENDERS[key], chunks, args.events, 1))
    base = best["limit"]
    print(f"{args.events} result frames in {len(chunks)} bodies, best of {args.rounds}")
    for key in chosen:
        us = best[key] / args.events * 1e6
        print(f"  {key:11} {us:6.2f} us/event   {base / best[key]:5.2f}x the limit")


if __name__ == "__main__":
    main()
