"""``rxlens replay FILE.jsonl``: serve a recording through the Lens emulator.

The recording's data frames are played into an emulator session, at recorded pace (or
``--speed N`` times faster, or ``--max-speed``), so any client or pipeline can be pointed at the
printed base URL and session id as if it were the live session. A recording of several merged
sessions is served as one emulator session per recorded session. Lifecycle frames
(``sse.stream.start``, heartbeats, ``sse.stream.end``) are not replayed: the emulator sends its
own. By default the play starts when the first reader connects, and the command exits once
every session was played and its readers got ``sse.stream.end``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rxlens.cli._common import CONTROL_TYPES, StatusPrinter, port_number, start_emulator
from rxlens.cli._serve import check_host
from rxlens.errors import ConfigurationError
from rxlens.events import SESSION_FAILED, LensEvent, to_json
from rxlens.recording import read_recording

if TYPE_CHECKING:
    from rxlens.emulator import LensEmulator

EXAMPLES = """\
examples:
  rxlens replay run.jsonl                  # at recorded pace, once a reader connects
  rxlens replay run.jsonl --speed 10       # ten times faster
  rxlens replay run.jsonl --max-speed      # as fast as the readers take it
  rxlens replay run.jsonl --port 8765 --keep

  # in another shell, with the printed values:
  rxlens tail SESSION --base-url http://127.0.0.1:PORT/api --api-key KEY

The recording format is described in rxlens.recording. Exit codes: see 'rxlens --help'.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="serve a recording through the Lens emulator",
        description=(
            "Serve a recording made by 'rxlens record' (or rxlens.to_jsonl) through a local "
            "Lens API emulator, so any client or pipeline can read it like a live session."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE.jsonl", help="the recording")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=1.0, metavar="N", help="N times the recorded pace"
    )
    pace.add_argument(
        "--max-speed", action="store_true", help="as fast as the readers take the events"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; another interface needs --api-key)",
    )
    parser.add_argument(
        "--port", type=port_number, default=0, help="TCP port (default: any free one)"
    )
    parser.add_argument("--api-key", default=None, help="the key to accept (default: generated)")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="start playing at once instead of when the first reader connects",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep serving after the play (until Ctrl-C); sessions stay open",
    )
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds (default 5)")
    parser.set_defaults(func=run)


@dataclass
class Track:
    """The frames of one recorded session, ready to play."""

    recorded_id: str | None
    payloads: list[str] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    served_id: str = ""


def load(path: str) -> tuple[list[Track], int]:
    """The recording's data frames per recorded session, with offsets from its first frame.

    Returns the tracks (in order of first appearance) and the number of frames left out
    (lifecycle frames and session failures, which a server does not send as data).
    """
    events: list[LensEvent] = list(read_recording(path))
    if not events:
        raise ConfigurationError(f"{path} holds no events to replay")
    start = events[0].received_at
    tracks: dict[str | None, Track] = {}
    skipped = 0
    for event in events:
        if event.type in CONTROL_TYPES or event.type == SESSION_FAILED:
            skipped += 1
            continue
        track = tracks.setdefault(event.session_id, Track(event.session_id))
        # The frame text exactly as recorded (malformed ones included); built events have none.
        track.payloads.append(event.raw or _envelope(event))
        track.offsets.append(max(0.0, event.received_at - start))
    if not tracks:
        raise ConfigurationError(f"{path} holds only lifecycle frames; nothing to replay")
    return list(tracks.values()), skipped


def _envelope(event: LensEvent) -> str:
    import json

    return json.dumps(to_json(event), separators=(",", ":"))


def run(args: argparse.Namespace) -> int:
    """Serve the recording until it was played (or, with ``--keep``, until Ctrl-C)."""
    from rxlens.emulator import LensEmulator

    if not args.max_speed and not args.speed > 0:
        raise ConfigurationError("--speed must be positive")
    check_host(args.host, args.api_key)
    say = StatusPrinter(prefix="rxlens replay")
    tracks, skipped = load(args.file)
    speed = None if args.max_speed else float(args.speed)
    emulator = LensEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        heartbeat_interval=args.heartbeat_interval,
        # Long quiet stretches in a recording must not end the stream early.
        idle_timeout=max(60.0, _longest_gap(tracks) / (speed or 1.0) + 30.0),
        # Every reader gets the whole recording, whenever it connects.
        replay="all",
    )
    start_emulator(emulator, args.host, args.port)
    with emulator:
        for track in tracks:
            track.served_id = emulator.create_session("manual")
        total = sum(len(t.payloads) for t in tracks)
        pace = "as fast as readers take it" if speed is None else f"{speed:g}x recorded pace"
        print(
            f"Replaying {args.file}: {total} events ({skipped} lifecycle frames left out), {pace}"
        )
        print(f"Base URL:   {emulator.base_url}")
        print(f"API key:    {emulator.api_key}")
        for track in tracks:
            recorded = f" (recorded as {track.recorded_id})" if track.recorded_id else ""
            print(f"Session id: {track.served_id}{recorded}")
        first = tracks[0].served_id
        print(
            f"Try:        rxlens tail {first} --base-url {emulator.base_url} "
            f"--api-key {emulator.api_key}",
            flush=True,
        )
        try:
            if not args.no_wait:
                say("waiting for a reader (Ctrl-C to stop)")
                _wait_for_reader(emulator, [t.served_id for t in tracks])
            for track in tracks:
                emulator.play(
                    track.served_id,
                    track.payloads,
                    offsets=None if speed is None else track.offsets,
                    speed=speed,
                    destroy_when_done=not args.keep,
                )
            say("playing")
            if args.keep:
                while True:
                    time.sleep(3600)
            _wait_played(emulator, [t.served_id for t in tracks])
        except KeyboardInterrupt:
            say("stopped")
            return 130
        say(f"played {total} events; the readers got sse.stream.end")
    sys.stdout.flush()
    return 0


def _longest_gap(tracks: Sequence[Track]) -> float:
    gaps = [b - a for t in tracks for a, b in zip(t.offsets, t.offsets[1:], strict=False)]
    return max(gaps, default=0.0)


def _wait_for_reader(emulator: LensEmulator, session_ids: Sequence[str]) -> None:
    from rxlens.emulator import EmulatorTimeout

    # Short slices, so Ctrl-C is seen at once.
    while True:
        for sid in session_ids:
            try:
                emulator.wait_readers(sid, 1, timeout=0.2 / len(session_ids))
                return
            except EmulatorTimeout:
                continue


def _wait_played(emulator: LensEmulator, session_ids: Sequence[str]) -> None:
    """Until every session was destroyed (played out) and its readers got the stream end."""
    for sid in session_ids:
        while True:
            stats = emulator.session_stats(sid)
            if "DESTROYED" in stats.status.upper() and stats.readers_open == 0:
                break
            time.sleep(0.05)
