"""``rxlens serve``: run the Lens emulator until Ctrl-C.

Prints the base URL, the API key and a ready session id, then serves. The key is printed
because the user needs it to connect; it is never logged.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, Literal

from rxlens.cli._common import port_number, start_emulator
from rxlens.emulator import LENSES, Faults, LensEmulator, is_loopback
from rxlens.errors import ConfigurationError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a local Lens API emulator (no API key, no network)",
        description=(
            "Run a local Archetype AI Lens API emulator on 127.0.0.1 with one ready session. "
            "Stop it with Ctrl-C."
        ),
        epilog=(
            "examples:\n"
            "  rxlens serve\n"
            "  rxlens serve --lens machine-state --rate 5 --seed 1\n"
            "  rxlens serve --port 0 --faults drop_after=20,fail_next=2,fail_status=429\n"
            "  rxlens serve --host 0.0.0.0 --api-key my-chosen-key\n"
            "  rxlens serve --cors http://localhost:5173 --no-auth   # a browser demo\n\n"
            "Faults: comma-separated name=value pairs, e.g. "
            "--faults drop_after=20,fail_next=2,fail_status=429. Names: "
            "drop_after drop_rate drops stall_after stall_for stalls fail_next fail_status "
            "retry_after malformed malformed_every crlf retry_ms large_event_after slow_drip "
            "ids close_delimited content_type."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; another interface needs --api-key)",
    )
    parser.add_argument(
        "--port", type=port_number, default=8765, help="TCP port (default 8765; 0: any)"
    )
    parser.add_argument(
        "--lens",
        default="activity-monitor",
        choices=sorted(LENSES),
        help="scripted lens of the ready session (default activity-monitor)",
    )
    parser.add_argument(
        "--channel",
        choices=("sse", "mailbox"),
        default="sse",
        help="where the ready session's lens writes: the SSE consumer (default) or the "
        "session.read mailbox at its session_endpoint",
    )
    parser.add_argument("--rate", type=float, default=None, help="events per second (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="make the output reproducible")
    parser.add_argument("--api-key", default=None, help="the key to accept (default: generated)")
    parser.add_argument("--faults", default="", metavar="SPEC", help="faults to inject (below)")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--idle-timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--replay", choices=("live", "all"), default="live", help="what a new reader sees first"
    )
    parser.add_argument(
        "--cors",
        default=None,
        metavar="ORIGIN",
        help="let a web page from ORIGIN (e.g. http://localhost:5173, or *) call the emulator",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="accept requests without a key (loopback --host only; for browser EventSource)",
    )
    parser.set_defaults(func=run)


def check_host(host: str, api_key: str | None, *, no_auth: bool = False) -> None:
    """Refuse to serve where other machines reach it with a generated key or without a key.

    One rule for every command that serves (``serve``, ``replay``).

    Raises:
        ConfigurationError: a non-loopback ``host`` without ``--api-key``, or with
            ``--no-auth``.
    """
    if is_loopback(host):
        return
    if no_auth:
        raise ConfigurationError(
            f"refusing --no-auth on {host}: other machines could reach it; --no-auth is for "
            "the default --host 127.0.0.1 only"
        )
    if not api_key:
        # A generated key is printed to the terminal: on an interface other machines reach,
        # the operator must choose the key deliberately.
        raise ConfigurationError(
            f"refusing to listen on {host} with a generated key: other machines could "
            "reach it; choose a key with --api-key, or keep the default --host 127.0.0.1"
        )


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C (or until ``stop`` is set, for embedding)."""
    no_auth = bool(getattr(args, "no_auth", False))
    cors = getattr(args, "cors", None)
    check_host(args.host, args.api_key, no_auth=no_auth)
    faults = Faults.parse(args.faults) if args.faults else None
    emulator = LensEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        heartbeat_interval=args.heartbeat_interval,
        idle_timeout=args.idle_timeout,
        replay=args.replay,
        faults=faults,
        seed=args.seed,
        require_auth=not no_auth,
        cors_origin=cors,
    )
    start_emulator(emulator, args.host, args.port)
    with emulator:
        channel: Literal["sse", "mailbox"] = getattr(args, "channel", "sse")
        session_id = emulator.create_session(
            args.lens, rate=args.rate, seed=args.seed, channel=channel
        )
        print(f"Lens emulator serving at {emulator.base_url} (also {emulator.root_url}/v0.5)")
        if no_auth:
            print("API key:    none needed (--no-auth)")
        else:
            print(f"API key:    {emulator.api_key}")
        if cors:
            print(f"CORS:       requests from {cors} allowed")
        print(f"Session id: {session_id} (lens {args.lens}, {channel} channel)")
        if channel == "mailbox":
            print(f"Mailbox:    {emulator.mailbox_endpoint(session_id)} (session.read)")
        else:
            print(f"Stream:     curl -N -H 'Authorization: Bearer {emulator.api_key}' \\")
            print(f"              {emulator.consumer_url(session_id)}")
        print(
            f"Try:        rxlens tail {session_id} --base-url {emulator.base_url} "
            f"--api-key {emulator.api_key}"
        )
        print(f"Or:         export ATAI_API_ENDPOINT={emulator.base_url}")
        print(f"            export ATAI_API_KEY={emulator.api_key}")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            (stop or threading.Event()).wait()
        finally:
            end_streams(emulator)
    sys.stdout.flush()
    return 0


def end_streams(emulator: LensEmulator, timeout: float = 2.0) -> None:
    """Destroy every session so each open stream gets ``sse.stream.end`` before the socket
    closes: a reader then stops at once instead of retrying a server that is gone."""
    from rxlens.emulator import EmulatorError

    session_ids = emulator.session_ids
    for session_id in session_ids:
        emulator.destroy(session_id)
    deadline = time.monotonic() + timeout
    for session_id in session_ids:
        try:
            emulator.wait_until(
                session_id,
                lambda stats: stats.readers_open == 0,
                timeout=max(0.0, deadline - time.monotonic()),
            )
        except EmulatorError:
            return  # a reader that does not leave is cut by close()
