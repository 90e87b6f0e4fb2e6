"""``python -m benchmarks.decoder``: the SSE decoders alone, parse only, no network.

rxlens's ``Decoder`` against the parsers of httpx-sse and sseclient-py, fed the same bytes in
64 KiB chunks: 200,000 Lens-shaped events of about 165 bytes, then one 2 MiB event. Each
figure is the best of five runs; ratios are to rxlens in the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

CHUNK = 65536


def lens_frames(n: int) -> bytes:
    payload = json.dumps(
        {
            "type": "inference.result",
            "event_data": {
                "response": ["Person stirs a pot."],
                "query_metadata": {"sensor_timestamp": "00:02:15"},
            },
        }
    ).encode()
    return b"".join(b"event: message\nid: %d\ndata: %s\n\n" % (i, payload) for i in range(n))


def chunked(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def rxlens_count(chunks: list[bytes]) -> int:
    from rxlens.sse import Decoder

    decoder = Decoder()
    return sum(len(decoder.feed(chunk)) for chunk in chunks) + len(decoder.close())


def httpx_sse_count(chunks: list[bytes]) -> int:
    from httpx_sse._decoders import SSEDecoder, SSELineDecoder

    lines, events, n = SSELineDecoder(), SSEDecoder(), 0
    for chunk in chunks:
        for line in lines.decode(chunk.decode("utf-8", "replace")):
            n += events.decode(line) is not None
    for line in lines.flush():
        n += events.decode(line) is not None
    return n


def sseclient_count(chunks: list[bytes]) -> int:
    import sseclient

    return sum(1 for _ in sseclient.SSEClient(iter(chunks)).events())


CONTENDERS: dict[str, Callable[[list[bytes]], int]] = {
    "rxlens": rxlens_count,
    "httpx-sse": httpx_sse_count,
    "sseclient-py": sseclient_count,
}


def best_of(fn: Callable[[list[bytes]], int], chunks: list[bytes], expected: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        got = fn(chunks)
        best = min(best, time.perf_counter() - started)
        if got != expected:
            raise AssertionError(f"{fn.__name__} decoded {got} events, expected {expected}")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decoder", description=__doc__)
    parser.add_argument("-n", type=int, default=200_000, help="events (default 200,000)")
    args = parser.parse_args(argv)
    data = lens_frames(args.n)
    small = chunked(data)
    big = chunked(b"data: " + b"x" * (2 * 2**20) + b"\n\n")
    print(f"{args.n:,} events of {len(data) / args.n:.0f} bytes in {CHUNK // 1024} KiB chunks")
    results = {
        name: (args.n / best_of(fn, small, args.n), best_of(fn, big, 1) * 1000)
        for name, fn in CONTENDERS.items()
    }
    base = results["rxlens"][0]
    print("| decoder | events/s | x rxlens | one 2 MiB event, ms |")
    print("|---|---:|---:|---:|")
    for name, (rate, big_ms) in results.items():
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f} | {big_ms:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
