"""``rxlens record SESSION_ID -o FILE.jsonl``: record every frame of a session.

Each frame becomes one line of the recording format of :mod:`rxlens.recording` (with its id
and arrival time), flushed as it is written, so a recording cut short by a crash or Ctrl-C
keeps everything received up to that point. ``rxlens replay`` serves a recording again, and
``rxlens.replay(path)`` replays it into any pipeline.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from reactivex import Observable
from reactivex import operators as ops

from rxlens.cli._common import (
    ResumeReporter,
    StatusPrinter,
    add_channel_argument,
    add_connection_args,
    check_session,
    command_policy,
    is_tty,
    make_client,
    run_stream,
    warnings_as_lines,
)
from rxlens.errors import ConfigurationError
from rxlens.events import INFERENCE_RESULT, LensEvent
from rxlens.recording import RecordingIOError, read_recording
from rxlens.sinks import to_jsonl

EXAMPLES = """\
examples:
  rxlens record lsn-0123456789abcdef -o run.jsonl            # until the stream ends
  rxlens record lsn-0123456789abcdef -o run.jsonl --follow   # until Ctrl-C
  rxlens record lsn-0123456789abcdef -o run.jsonl --append   # continue after its last id
  rxlens record lsn-0123456789abcdef -o run.jsonl --force    # replace an existing file
  rxlens replay run.jsonl                                    # serve it again

A new file is created readable by its owner only. Every line is flushed as it is written.
An existing FILE is kept: pass --append to continue it or --force to replace it.
Ctrl-C stops recording and prints the count (exit code 130); see 'rxlens --help'.
"""

#: Seconds between running-count lines when stderr is not a terminal.
PLAIN_EVERY = 5.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record every frame of a session to a JSONL file",
        description=(
            "Record every frame of a Lens session (results, heartbeats, lifecycle frames) to a "
            "JSONL file, one line per frame with its id and arrival time, flushed per line. "
            "Resumes after connection drops."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("session_id", metavar="SESSION_ID", help="the session (lsn-...)")
    add_channel_argument(parser)
    parser.add_argument(
        "-o", "--output", required=True, metavar="FILE.jsonl", help="the recording to write"
    )
    # An existing recording is never replaced by accident: say which of the two is meant.
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--append",
        action="store_true",
        help="add to FILE, continuing after the last event id it holds",
    )
    existing.add_argument(
        "--force",
        action="store_true",
        help="overwrite FILE if it exists (without --append or --force, an existing FILE is "
        "an error)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="after the server ends an idle stream, reconnect while the session runs",
    )
    parser.add_argument(
        "-n", "--count", type=int, default=None, metavar="N", help="stop after N frames"
    )
    add_connection_args(parser)
    parser.set_defaults(func=run)


def last_recorded_id(path: str) -> str | None:
    """The last event id in a recording (``None`` if it holds none, or does not exist).

    A torn last line (a write cut short) is cut off the file, so that appending starts on a
    clean line.
    """
    if not os.path.exists(path):
        return None
    _drop_torn_tail(path)
    last: str | None = None
    for event in read_recording(path):
        if event.id is not None:
            last = event.id
    return last


def _drop_torn_tail(path: str) -> None:
    try:
        with open(path, "rb+") as handle:
            data = handle.read()
            if not data or data.endswith(b"\n"):
                return
            handle.truncate(data.rfind(b"\n") + 1)
    except OSError as exc:
        raise RecordingIOError(f"cannot read {path!r} to append to it: {exc}") from exc
    print(f"rxlens record: cut a torn last line off {path}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Record until the stream ends, ``--count`` frames, or Ctrl-C."""
    if args.count is not None and args.count < 1:
        raise ConfigurationError("--count must be at least 1")
    say = StatusPrinter(prefix="rxlens record")
    path: str = args.output
    if not (args.append or args.force) and os.path.lexists(path):
        raise ConfigurationError(
            f"{path} exists; pass --append to continue it or --force to overwrite it"
        )
    since = last_recorded_id(path) if args.append else None
    if since is not None:
        say(f"appending to {path} after id {since}")
    client = make_client(args)
    lock = threading.Lock()
    frames = results = 0
    last_id: str | None = since

    def current_id() -> str | None:
        return last_id

    reporter = ResumeReporter(say, current_id)
    progress = _Progress(path)

    def count(event: LensEvent) -> None:
        nonlocal frames, results, last_id
        with lock:
            frames += 1
            results += event.type == INFERENCE_RESULT
            if event.id is not None:
                last_id = event.id
            progress.update(frames, results, last_id)

    with client, warnings_as_lines(say, lambda: last_id is not None):
        check_session(client, args.session_id, check_channel=args.channel == "sse")
        events: Observable[LensEvent] = client.events(
            args.session_id,
            last_event_id=since,
            follow=args.follow,
            policy=command_policy(reporter.opened),
            on_state=reporter,
            channel=args.channel,
            check_channel=args.channel == "auto",  # "sse": done by check_session
        )
        if args.count is not None:
            events = events.pipe(ops.take(args.count))
        recording = events.pipe(to_jsonl(path, append=args.append))
        try:
            with progress:
                run_stream(recording, count)
        except KeyboardInterrupt:
            say(f"stopped: {_counted(frames, results, last_id)} in {path}")
            return 130
    if args.count is not None and frames >= args.count:
        # Reaching -n is this command's own stop, not the server ending the stream.
        say(
            f"stopped after {_counted(frames, results, last_id, limit=args.count)} in {path}"
        )
    else:
        say(f"stream ended: {_counted(frames, results, last_id)} in {path}")
    return 0


def _counted(
    frames: int, results: int, last_id: str | None, *, limit: int | None = None
) -> str:
    text = f"{frames} frame" + ("" if frames == 1 else "s")
    text += f" (-n {limit}; {results} results)" if limit is not None else f" ({results} results)"
    if last_id:
        text += f", last id {last_id}"
    return text


class _Progress:
    """The running count: a status line updated in place on a terminal, else a line now and then."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.live = is_tty(sys.stderr)
        self._status: Any = None
        self._next = time.monotonic() + PLAIN_EVERY

    def __enter__(self) -> _Progress:
        if self.live:
            from rich.console import Console

            self._status = Console(stderr=True).status(f"recording to {self.path}")
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, frames: int, results: int, last_id: str | None) -> None:
        text = f"recording to {self.path}: {_counted(frames, results, last_id)}"
        if self._status is not None:
            self._status.update(text)
        elif time.monotonic() >= self._next:
            self._next = time.monotonic() + PLAIN_EVERY
            print(f"rxlens record: {text}", file=sys.stderr, flush=True)
