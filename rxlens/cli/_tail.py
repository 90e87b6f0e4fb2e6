"""``rxlens tail SESSION_ID``: print a session's events as they arrive.

One readable line per event (or one JSON object per line with ``--json``) on stdout; what
happens to the connection (drops, resumes, warnings) goes to stderr, so the output can be
piped. It reads through the canonical pipeline (``LensClient.events``), so it resumes after a
drop from the last event id, without losing or repeating events where the server sends ids.
"""

from __future__ import annotations

import argparse
import sys
import threading
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
    format_line,
    json_line,
    make_client,
    run_stream,
    warnings_as_lines,
)
from rxlens.errors import ConfigurationError
from rxlens.events import LensEvent
from rxlens.operators import only_results

EXAMPLES = """\
examples:
  rxlens tail lsn-0123456789abcdef                 # every event, one line each
  rxlens tail lsn-0123456789abcdef --results-only  # inference results only
  rxlens tail lsn-0123456789abcdef --json | jq .event_data.response
  rxlens tail lsn-0123456789abcdef --since-id 812  # resume after event 812
  rxlens tail lsn-0123456789abcdef --follow        # keep going across idle stream ends
  rxlens serve & rxlens tail SESSION --base-url http://127.0.0.1:8765/api --api-key KEY

Without --follow it stops when the server ends the stream (sse.stream.end). Ctrl-C stops it
and prints how many events it showed (exit code 130). Other exit codes: see 'rxlens --help'.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tail",
        help="print a session's events as they arrive",
        description=(
            "Print the events of a Lens session as they arrive, one readable line each "
            "(or JSON lines). Resumes after connection drops and says so on stderr."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("session_id", metavar="SESSION_ID", help="the session (lsn-...)")
    add_channel_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--results-only", action="store_true", help="print inference results only")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="after the server ends an idle stream, reconnect while the session runs",
    )
    parser.add_argument(
        "--since-id",
        default=None,
        metavar="ID",
        help="start after this event id (sent as Last-Event-ID)",
    )
    parser.add_argument(
        "-n",
        "--count",
        type=int,
        default=None,
        metavar="N",
        help="stop after N printed events",
    )
    add_connection_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Tail the session until its stream ends, ``--count`` events, or Ctrl-C."""
    if args.count is not None and args.count < 1:
        raise ConfigurationError("--count must be at least 1")
    say = StatusPrinter(prefix="rxlens tail")
    client = make_client(args)
    lock = threading.Lock()
    shown = 0
    last_id: str | None = args.since_id

    def current_id() -> str | None:
        return last_id

    reporter = ResumeReporter(say, current_id)
    render = json_line if args.json else format_line

    def show(event: LensEvent) -> None:
        nonlocal shown, last_id
        with lock:
            if event.id is not None:
                last_id = event.id
            print(render(event), flush=True)
            shown += 1

    with client, warnings_as_lines(say, lambda: last_id is not None):
        check_session(client, args.session_id, check_channel=args.channel == "sse")
        events: Observable[LensEvent] = client.events(
            args.session_id,
            last_event_id=args.since_id,
            follow=args.follow,
            policy=command_policy(reporter.opened),
            on_state=reporter,
            channel=args.channel,
            check_channel=args.channel == "auto",  # "sse": done by check_session
        )
        if args.results_only:
            events = events.pipe(only_results())
        if args.count is not None:
            events = events.pipe(ops.take(args.count))
        try:
            run_stream(events, show)
        except KeyboardInterrupt:
            say(f"stopped: {_counted(shown, last_id)}")
            return 130
        except BrokenPipeError:
            # The reader of our output went away (`| head`): a normal end for a filter.
            return 0
    if args.count is not None and shown >= args.count:
        # Reaching -n is this command's own stop, not the server ending the stream.
        say(f"stopped after {_counted(shown, last_id, limit=args.count)}")
    else:
        say(f"stream ended: {_counted(shown, last_id)}")
    sys.stdout.flush()
    return 0


def _counted(shown: int, last_id: str | None, *, limit: int | None = None) -> str:
    text = f"{shown} event" + ("" if shown == 1 else "s")
    if limit is not None:
        text += f" (-n {limit})"
    if last_id:
        text += f", last id {last_id}"
    return text
