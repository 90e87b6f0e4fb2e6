"""``rxlens demo``: rxlens at work in a minute, with no API key.

It starts the embedded Lens emulator, creates an Activity Monitor-like session and a Machine
State-like session that write to the SSE consumer and a third, Machine State-like, whose lens
writes to the ``session.read`` mailbox, consumes all three with the canonical pipeline
(``LensClient.events(..., channel="auto")``, which picks each session's channel and says so)
merged into one stream, and shows, as it happens: the channel and connection state of each
session, events per second, the results per label in time windows with the majority vote of
each window, and alert edges. Partway through, the emulator drops the Activity Monitor
connection mid-frame, and the mailbox connection while a ``session.read`` is in flight (the
lost batch, recovered or reported by the lost-batch policy); the view shows each resume and the
loss and duplication it *measured*, by matching what the pipeline delivered against the
emulator's own log of what it sent (by content: SSE ids and mailbox cursors are not compared).

With ``--session-id`` (and an API key) it shows the same view for real sessions.

On a terminal the view updates in place (:class:`rich.live.Live`); piped or in CI it prints
plain lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import sys
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from reactivex import Observable
from reactivex import operators as ops
from reactivex.disposable import CompositeDisposable

from rxlens.analytics import label_counts, majority_vote
from rxlens.cli._common import (
    CONTROL_TYPES,
    add_connection_args,
    check_session,
    command_policy,
    is_tty,
    make_client,
    short_id,
)
from rxlens.client import LensClient
from rxlens.errors import ConfigurationError, RxLensError
from rxlens.events import InferenceResult, LensEvent, SessionFailed
from rxlens.operators import (
    merge_sessions,
    only_results,
    rate,
    rising_edge,
    window_results,
)
from rxlens.sse import ConnectionState

EXAMPLES = """\
examples:
  rxlens demo                          # 30 s against the embedded emulator, no key needed
  rxlens demo --seconds 10 --window 3  # shorter, with 3 s windows
  rxlens demo --faults ids=false       # see what a resume cannot do without event ids
  rxlens demo --on-lost warn           # the mailbox's lost batch reported, not recovered
  ATAI_API_KEY=... rxlens demo --session-id lsn-abc --seconds 120   # a real session

The demo exits 0 when it ran to its end (see 'rxlens --help' for the other exit codes).
"""

#: Each demo session: its name, lens, events per second, and the channel its lens writes to.
DEMO_SESSIONS = (
    ("activity", "activity-monitor", 4.0, "sse"),
    ("machine", "machine-state", 5.0, "sse"),
    ("pump", "machine-state", 3.0, "mailbox"),
)
#: The share of a window's results the winning label needs (0: the most common label wins,
#: unless two tie). The Activity Monitor's six activities rarely reach a half.
VOTE_SHARE = 0.0
#: An alert holds this long (seconds) before it counts (rising_edge's debounce).
ALERT_HOLD = 1.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="see rxlens work: three emulated sessions (SSE and mailbox), live analytics, "
        "drops and their resumes",
        description=(
            "Run the embedded Lens emulator with an Activity Monitor-like and a Machine "
            "State-like session on the SSE channel and a Machine State-like one on the "
            "session.read mailbox, consume them with the canonical pipeline (channel='auto') "
            "and show each session's channel, connection states, events/s, results per label "
            "per window, the majority vote of each window and alert edges. Partway through, "
            "an SSE and the mailbox connection are dropped and each resume is shown with the "
            "loss and duplication it measured. Ends by itself. With --session-id it shows "
            "real sessions instead (needs an API key)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to run (default 30)")
    parser.add_argument(
        "--window", type=float, default=10.0, help="window length in seconds (default 10)"
    )
    parser.add_argument(
        "--session-id",
        action="append",
        default=None,
        metavar="ID",
        help="show this real session instead of the emulator (repeatable; needs a key)",
    )
    add_connection_args(parser)
    parser.add_argument(
        "--alert-label",
        default="BROKEN",
        metavar="LABEL",
        help=(
            "a result with this label, or whose text starts with 'Alert:', raises an alert "
            f"once it holds for {ALERT_HOLD:g} s (default BROKEN)"
        ),
    )
    parser.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="extra emulator faults for the Activity Monitor session (as in 'rxlens serve')",
    )
    parser.add_argument(
        "--on-lost",
        choices=("replay", "warn"),
        default="replay",
        help=(
            "the mailbox session's lost-batch policy: 'replay' reads again under a fresh "
            "client_id and skips what was delivered (exactly once; the demo's default), "
            "'warn' reports the possible loss (the library's default)"
        ),
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="print plain lines even on a terminal (the default when output is not one)",
    )
    parser.set_defaults(func=run)


# --- measuring what a resume lost or duplicated -----------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What a consumer received, against what the server sent.

    ``sent`` counts the server's events considered, ``delivered`` the deliveries that match one
    of them, ``lost`` the sent events never delivered, ``duplicated`` the deliveries beyond
    the first of an event, ``unexpected`` deliveries matching nothing the server sent.
    """

    sent: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int

    def __str__(self) -> str:
        text = f"{self.lost} lost, {self.duplicated} duplicated"
        if self.unexpected:
            text += f", {self.unexpected} unexpected"
        return text


def tally(
    sent_ids: Sequence[int], delivered_ids: Sequence[int | None], upto: int | None = None
) -> Tally:
    """Compare the ids a server sent with the ids a consumer got (``None``: matched nothing).

    With ``upto``, only the sent events up to that id count, and deliveries of later ones are
    ignored: the measure of a stream still running.
    """
    sent = [i for i in sent_ids if upto is None or i <= upto]
    wanted = set(sent)
    got = [i for i in delivered_ids if i is None or upto is None or i <= upto]
    matched = [i for i in got if i is not None and i in wanted]
    unique = set(matched)
    return Tally(
        sent=len(sent),
        delivered=len(matched),
        lost=len(wanted - unique),
        duplicated=len(matched) - len(unique),
        unexpected=len(got) - len(matched),
    )


def content_key(payload: Any) -> str:
    """A canonical text of a decoded JSON payload, to match a delivery with what was sent."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


class SentLog:
    """The emulator's log of one session, looked up by content.

    Deliveries are matched by content rather than by SSE id, so the measure holds even when
    the server sends no ids (``--faults ids=false``), exactly when a resume cannot be exact.
    """

    def __init__(self, read: Callable[[], list[tuple[int, Any]]]) -> None:
        self._read = read
        self._by_key: dict[str, int] = {}
        self.ids: list[int] = []

    def refresh(self) -> None:
        """Read the log again (new events since the last read)."""
        entries = self._read()
        known = self.ids[-1] if self.ids else 0
        self.ids = [event_id for event_id, _ in entries]
        for event_id, payload in entries:
            if event_id > known:
                self._by_key.setdefault(content_key(payload), event_id)

    def id_of(self, key: str) -> int | None:
        """The id of the sent event with this content key (refreshing once if unknown)."""
        found = self._by_key.get(key)
        if found is None:
            self.refresh()
            found = self._by_key.get(key)
        return found


# --- the state the view shows -------------------------------------------------------------------


@dataclass
class Track:
    """One session as the view follows it."""

    session_id: str
    name: str
    lens: str
    #: The channel read: "sse" or "mailbox" (as the client announced it; "?" until then).
    channel: str = "?"
    #: Why the client chose it, and the mailbox's lost-batch policy (None: not a mailbox).
    channel_why: str = ""
    on_lost: str | None = None
    state: str = "starting"
    events: int = 0
    rate: float = 0.0
    last_id: str | None = None
    drops: int = 0
    failed: str | None = None
    connected: bool = False
    #: Content keys of the data events delivered, in order (matched against the log later).
    keys: list[str] = field(default_factory=list)
    sent_log: SentLog | None = None
    last_sent_id: int | None = None
    dropped_at: float | None = None
    dropped_after: int | None = None
    reopened_in: float | None = None
    checking: bool = False
    resumes: list[str] = field(default_factory=list)


@dataclass
class WindowView:
    """One closed window: per session, results per label and the majority vote."""

    index: int
    closed_at: float
    counts: dict[str, Counter[Hashable]]
    votes: dict[str, Hashable | None]
    #: Seconds the window covered: shorter than the window's length for the last one, which
    #: the end of the streams closes early.
    span: float = 0.0

    def cut_short(self, window: float) -> bool:
        """Whether the end of the streams closed it before its ``window`` seconds."""
        return self.span < 0.9 * window

    def length(self, window: float) -> str:
        """``10 s``, or ``last 0.2 s`` when it was cut short."""
        return f"last {self.span:.1f} s" if self.cut_short(window) else f"{window:g} s"

    def label(self, window: float) -> str:
        """``window N``, with ``(last 0.2 s)`` when it was cut short."""
        suffix = f" ({self.length(window)})" if self.cut_short(window) else ""
        return f"window {self.index}{suffix}"


class DemoView:
    """Everything the demo shows, updated from the stream threads, read by the display.

    All updates take one lock; the display reads a consistent snapshot under it.
    """

    def __init__(
        self,
        tracks: Sequence[Track],
        *,
        window: float,
        seconds: float,
        title: str,
        out: IO[str],
        plain: bool,
    ) -> None:
        self.tracks = {t.session_id: t for t in tracks}
        self.window = window
        self.seconds = seconds
        self.title = title
        self.out = out
        self.plain = plain
        self.started = time.monotonic()
        self.lock = threading.RLock()
        self.windows: list[WindowView] = []
        self.current: dict[str, Counter[Hashable]] = {sid: Counter() for sid in self.tracks}
        self.alerts: list[tuple[float, str, str]] = []
        self.lines: deque[str] = deque(maxlen=8)
        self.done = threading.Event()
        self.error: BaseException | None = None

    # -- from the streams ------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        """Log a line: printed at once in plain mode, kept for the live view otherwise."""
        line = f"[{self.elapsed():5.1f}s] {message}"
        with self.lock:
            self.lines.append(line)
            if self.plain:
                print(line, file=self.out, flush=True)

    def on_state(self, session_id: str, state: ConnectionState) -> None:
        with self.lock:
            track = self.tracks[session_id]
            track.state = state.kind
            chosen = _CHANNEL_NOTE.match(state.note) if state.kind == "connecting" else None
            if chosen is not None and track.channel == "?":
                track.channel, track.channel_why = chosen.group(1), chosen.group(2)
                self.say(f"{track.name}: reading the {track.channel} channel ({track.channel_why})")
            if state.kind == "backing_off":
                track.drops += 1
                if track.dropped_at is None:
                    track.dropped_at = time.monotonic()
                    track.dropped_after = track.last_sent_id
                    track.reopened_in = None
                reason = _error_name(state.error) if state.error else "closed"
                delay = 0.0 if state.delay is None else state.delay
                where = "cursor" if track.channel == "mailbox" else "id"
                self.say(
                    f"{track.name}: connection lost after {where} "
                    f"{track.last_id or track.last_sent_id or '-'} "
                    f"({reason}); reconnecting in {delay:.1f} s"
                )
            elif state.kind == "open" and track.dropped_at is not None:
                track.reopened_in = time.monotonic() - track.dropped_at
                track.dropped_at = None
                track.checking = True
                cursor = state.last_event_id or "none"
                kind = "mailbox cursor" if track.channel == "mailbox" else "Last-Event-ID"
                self.say(
                    f"{track.name}: connection open again in {track.reopened_in:.1f} s "
                    f"({kind}: {cursor})"
                )
                if track.sent_log is None:
                    self._resumed(track, None)
            elif state.kind == "failed":
                self.say(f"{track.name}: gave up: {state.error}")
            elif state.kind == "open" and not track.connected:
                track.connected = True
                self.say(f"{track.name}: connected ({track.channel})")

    def on_event(self, event: LensEvent) -> None:
        sid = event.session_id or ""
        with self.lock:
            track = self.tracks.get(sid)
            if track is None:
                return
            if isinstance(event, SessionFailed):
                track.failed = str(event.error)
                track.state = "failed"
                if self.error is None:
                    self.error = event.error
                self.say(f"{track.name}: failed: {event.error}")
                return
            if event.type in CONTROL_TYPES:
                return
            track.events += 1
            if event.id is not None:
                track.last_id = event.id
            if isinstance(event, InferenceResult):
                self.current[sid][_label(event)] += 1
            if track.sent_log is None:
                return
            key = _key(event)
            track.keys.append(key)
            sent_id = track.sent_log.id_of(key)
            if sent_id is not None:
                track.last_sent_id = max(sent_id, track.last_sent_id or 0)
                # Once the stream is past the point where it broke, the resume can be judged.
                after = track.dropped_after or 0
                if track.checking and sent_id > after:
                    self._resumed(track, sent_id)

    def _resumed(self, track: Track, upto: int | None) -> None:
        track.checking = False
        took = f"{track.reopened_in:.1f} s" if track.reopened_in is not None else "?"
        after = track.dropped_after if track.dropped_after is not None else "-"
        if track.sent_log is None or upto is None:
            line = f"reconnected after id {track.last_id or after} in {took}"
        else:
            measure = self.measure(track, upto)
            line = f"reconnected after id {after} in {took}: {measure}"
        track.resumes.append(line)
        self.say(f"{track.name}: {line}")

    def measure(self, track: Track, upto: int | None = None) -> Tally:
        """The track's deliveries against the emulator's log (up to ``upto`` if given)."""
        assert track.sent_log is not None
        track.sent_log.refresh()
        delivered = [track.sent_log.id_of(key) for key in track.keys]
        return tally(track.sent_log.ids, delivered, upto)

    def on_rate(self, session_id: str, value: float) -> None:
        with self.lock:
            self.tracks[session_id].rate = value

    def on_window(self, window: Sequence[LensEvent]) -> None:
        with self.lock:
            if not window and self.elapsed() >= self.seconds:
                # The flush at the end, after the sessions were destroyed: nothing to show
                # (the mailbox ends a moment after SSE: it learns of the end by asking).
                return
            counts: dict[str, Counter[Hashable]] = {}
            votes: dict[str, Hashable | None] = {}
            for sid in self.tracks:
                mine = [e for e in window if e.session_id == sid]
                counts[sid] = label_counts(mine, _label)
                votes[sid] = majority_vote(mine, VOTE_SHARE, key=_label)
                self.current[sid] = Counter()
            now = self.elapsed()
            opened = self.windows[-1].closed_at if self.windows else 0.0
            view = WindowView(len(self.windows) + 1, now, counts, votes, now - opened)
            self.windows.append(view)
            parts = [
                f"{self.tracks[sid].name} {_top(counts[sid], 2)} -> vote "
                f"{_show(votes[sid], counts[sid])}"
                for sid in self.tracks
            ]
            self.say(f"{view.label(self.window)}: " + " | ".join(parts))

    def on_alert(self, event: LensEvent) -> None:
        with self.lock:
            track = self.tracks.get(event.session_id or "")
            name = track.name if track else short_id(event.session_id)
            label = _label(event) or "?"
            self.alerts.append((self.elapsed(), name, str(label)))
            held = f"held {ALERT_HOLD:g} s, id {event.id}"
            self.say(f"alert: {name} {_short(str(label), 40)} ({held})")

    def on_error(self, error: Exception) -> None:
        with self.lock:
            if self.error is None:
                self.error = error
        self.done.set()

    def on_completed(self) -> None:
        self.done.set()

    # -- reading it --------------------------------------------------------------------------

    def has_ids(self, message: str) -> bool:
        """Whether the session named in ``message`` delivered events with SSE ids."""
        with self.lock:
            return any(
                t.session_id in message and t.last_id is not None for t in self.tracks.values()
            )

    def status_line(self) -> str:
        with self.lock:
            parts = [
                f"{t.name} {t.channel} {t.state} {t.rate:.1f} ev/s "
                f"({t.events} events, last id {t.last_id or '-'})"
                for t in self.tracks.values()
            ]
        return "status: " + " | ".join(parts)

    def render(self) -> Any:
        """The live view, as a rich renderable."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            head = Text.assemble(
                ("rxlens demo", "bold"),
                f"  {self.title}  ",
                (f"{min(self.elapsed(), self.seconds):.0f} s / {self.seconds:g} s", "cyan"),
            )
            sessions = Table(title="sessions", title_justify="left", expand=False)
            for column in (
                "",
                "session",
                "lens",
                "channel",
                "connection",
                "events/s",
                "events",
                "last id",
                "drops",
            ):
                sessions.add_column(column)
            for t in self.tracks.values():
                style = {"open": "green", "backing_off": "yellow", "failed": "red"}.get(t.state, "")
                sessions.add_row(
                    t.name,
                    short_id(t.session_id, 20),
                    t.lens,
                    t.channel + (f" (lost batch: {t.on_lost})" if t.on_lost else ""),
                    Text(t.state, style=style),
                    f"{t.rate:.1f}",
                    str(t.events),
                    t.last_id or "-",
                    str(t.drops),
                )
            last = self.windows[-1] if self.windows else None
            title = (
                f"window {last.index} ({last.length(self.window)}, "
                f"closed at {last.closed_at:.0f} s)"
                if last
                else f"first {self.window:g} s window still open"
            )
            windows = Table(title=title, title_justify="left")
            windows.add_column("")
            windows.add_column("results per label")
            windows.add_column("vote")
            windows.add_column("open window so far")
            for sid, t in self.tracks.items():
                windows.add_row(
                    t.name,
                    _top(last.counts[sid], 2) if last else "-",
                    _show(last.votes[sid], last.counts[sid]) if last else "-",
                    _top(self.current[sid], 2),
                )
            alerts = Text(f"alerts (rising edges): {len(self.alerts)}")
            for at, name, label in self.alerts[-3:]:
                alerts.append(f"\n  {at:5.1f}s  {name}  {_short(label, 50)}")
            resumes = [f"{t.name} {line}" for t in self.tracks.values() for line in t.resumes[-2:]]
            resume_text = Text("resumes: " + ("; ".join(resumes) if resumes else "none yet"))
            log = Text("\n".join(self.lines), style="dim")
        return Group(head, sessions, windows, alerts, resume_text, log)


#: The client's note on the first ``connecting`` state of ``events(channel="auto")``.
_CHANNEL_NOTE = re.compile(r"reading the (sse|mailbox) channel: (.*)\Z", re.DOTALL)


def _error_name(error: BaseException) -> str:
    """The name of the error's first public class (a private subclass says nothing)."""
    for cls in type(error).__mro__:
        if not cls.__name__.startswith("_"):
            return cls.__name__
    return type(error).__name__


def _label(event: Any) -> str | None:
    value = getattr(event, "label", None)
    return None if value is None else str(value)


def _key(event: LensEvent) -> str:
    try:
        return content_key(json.loads(event.raw)) if event.raw else ""
    except ValueError:
        return event.raw


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _show(value: Hashable | None, counts: Counter[Hashable]) -> str:
    """A window's vote; None is a tie (VOTE_SHARE is 0), or a window with no result at all."""
    if value is None:
        return "none (a tie)" if counts else "none (no results)"
    return _short(str(value), 36)


def _top(counts: Counter[Hashable], n: int) -> str:
    if not counts:
        return "-"
    ranked = counts.most_common()
    text = ", ".join(f"{_short(str(label), 24)} {count}" for label, count in ranked[:n])
    if len(ranked) > n:
        text += f", +{len(ranked) - n} more"
    return text


# --- running it ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    if not args.seconds > 0:
        raise ConfigurationError("--seconds must be positive")
    if not args.window > 0:
        raise ConfigurationError("--window must be positive")
    out = sys.stdout
    plain = args.plain or not is_tty(out) or os.environ.get("TERM") == "dumb"
    if args.session_id:
        return _run_real(args, out, plain)
    if args.api_key:
        raise ConfigurationError(
            "--api-key shows a real session: name it with --session-id (or drop --api-key "
            "to run against the embedded emulator)"
        )
    return _run_emulated(args, out, plain)


def _run_emulated(args: argparse.Namespace, out: IO[str], plain: bool) -> int:
    from rxlens.emulator import Faults, LensEmulator, MailboxFaults

    extra = Faults.parse(args.faults) if args.faults else Faults()
    # Drop the Activity Monitor connection once, partway through: after about 40 % of the
    # events it will have sent by the end (its connection counts them, so this is exact).
    activity_rate = DEMO_SESSIONS[0][2]
    drop_after = max(3, int(activity_rate * args.seconds * 0.4))
    drop = dataclasses.replace(extra, drop_after=drop_after, drops=1)
    # The mailbox's drop comes once its connection delivered about half of its messages, on
    # the next read that finds some: the server moves the reader's position, then the
    # connection dies before the reply leaves (the batch no client can see was taken).
    mailbox_rate = DEMO_SESSIONS[2][2]
    mailbox_drop_after = max(3, int(mailbox_rate * args.seconds * 0.5))
    mailbox_drop = MailboxFaults(drop_after=mailbox_drop_after, drops=1)
    # replay="all": a reader without Last-Event-ID starts at the first event, so the measure
    # covers everything the sessions produced.
    with LensEmulator(heartbeat_interval=1.0, replay="all", seed=7) as emu:
        tracks = []
        for name, lens, per_second, channel in DEMO_SESSIONS:
            mailbox = channel == "mailbox"
            sid = emu.create_session(
                lens,
                rate=per_second,
                faults=drop if name == "activity" else None,
                # The lens config then names its writer: channel="auto" reads it from there.
                channel="mailbox" if mailbox else "sse",
                mailbox_faults=mailbox_drop if mailbox else None,
            )
            track = Track(sid, name, lens, on_lost=args.on_lost if mailbox else None)
            # Matched by content against the log of the channel the lens writes to.
            read = emu.mailbox_events if mailbox else emu.events
            track.sent_log = SentLog(functools.partial(read, sid))
            tracks.append(track)
        client = LensClient(api_key=emu.api_key, base_url=emu.base_url)
        title = f"Lens emulator at {emu.base_url} (no API key needed)"
        view = DemoView(
            tracks, window=args.window, seconds=args.seconds, title=title, out=out, plain=plain
        )
        if plain:
            print(f"rxlens demo: {title}", file=out)
            for (_, _, _, channel), t in zip(DEMO_SESSIONS, tracks, strict=True):
                where = "the session.read mailbox" if channel == "mailbox" else "SSE"
                policy = f", lost batch: {t.on_lost}" if t.on_lost else ""
                print(
                    f"  {t.name}: session {t.session_id}, lens {t.lens} (writes to {where}), "
                    f'read with channel="auto"{policy}',
                    file=out,
                )
            print(
                f"  the {tracks[0].name} connection will be dropped after {drop_after} events, "
                f"the {tracks[2].name} connection once it delivered {mailbox_drop_after} "
                "messages, while a session.read is in flight",
                file=out,
                flush=True,
            )

        def finish() -> None:
            # Destroying the sessions ends their streams with sse.stream.end: the pipeline
            # completes, flushing the last window, after every sent event was delivered.
            for t in tracks:
                emu.destroy(t.session_id)

        _drive(view, client, tracks, args, finish=finish, heartbeat=5.0, auto=True)
        client.close()
        _print_summary(view, out, measured=True)
    return 0


def _run_real(args: argparse.Namespace, out: IO[str], plain: bool) -> int:
    client = make_client(args)
    for session_id in args.session_id:
        # A missing or rejected key, an unknown session or an unreachable server is reported
        # as one line before the view starts.
        check_session(client, session_id)
    # check_session made sure each lens writes to SSE: that is the channel read.
    tracks = [
        Track(sid, f"s{i + 1}", "lens session", channel="sse")
        for i, sid in enumerate(args.session_id)
    ]
    title = f"Lens API at {client.base_url}"
    view = DemoView(
        tracks, window=args.window, seconds=args.seconds, title=title, out=out, plain=plain
    )
    if plain:
        print(f"rxlens demo: {title}", file=out)
        for t in tracks:
            print(f"  {t.name}: session {t.session_id}", file=out, flush=True)
    with client:
        _drive(view, client, tracks, args, finish=None, heartbeat=15.0, follow=True)
    if view.error is not None and all(t.failed for t in tracks):
        # Every session failed: report the first failure as the command's error (exit code).
        error = view.error
        if isinstance(error, RxLensError):
            raise error
        raise RxLensError(str(error)) from error
    _print_summary(view, out, measured=False)
    return 0


def _drive(
    view: DemoView,
    client: LensClient,
    tracks: Sequence[Track],
    args: argparse.Namespace,
    *,
    finish: Callable[[], None] | None,
    heartbeat: float,
    follow: bool = False,
    auto: bool = False,
) -> None:
    """Subscribe the pipeline, show the view until the time is up, then end it.

    ``auto``: each session read with ``channel="auto"`` (the client picks its channel and
    says which); otherwise the SSE consumer, already checked."""
    alert_label = args.alert_label

    def alerting(result: LensEvent) -> bool:
        label = _label(result) or ""
        return label == alert_label or label.lower().startswith("alert:")

    sources: dict[str, Observable[LensEvent]] = {}
    for t in tracks:
        opened = threading.Event()

        def on_state(
            state: ConnectionState, sid: str = t.session_id, flag: threading.Event = opened
        ) -> None:
            if state.kind == "open":
                flag.set()
            view.on_state(sid, state)

        sources[t.session_id] = client.events(
            t.session_id,
            # Real sessions: check_session checked the channel; emulated ones let "auto"
            # choose it (from the lens metadata) and announce it in the first state.
            channel="auto",
            check_channel=auto,
            follow=follow,
            heartbeat_timeout=heartbeat,
            policy=command_policy(opened),
            on_state=on_state,
            on_lost="replay" if t.on_lost == "replay" else "warn",
        )
    merged = merge_sessions(sources).pipe(ops.publish())
    results = merged.pipe(only_results())
    subscriptions = CompositeDisposable()
    subscriptions.add(merged.subscribe(view.on_event, view.on_error, view.on_completed))
    subscriptions.add(results.pipe(window_results(seconds=args.window)).subscribe(view.on_window))
    for t in tracks:
        mine = results.pipe(ops.filter(_of_session(t.session_id)))
        alerts = mine.pipe(rising_edge(alerting, debounce=ALERT_HOLD))
        subscriptions.add(alerts.subscribe(view.on_alert))
        data = merged.pipe(ops.filter(_of_session(t.session_id, data_only=True)))
        subscriptions.add(
            data.pipe(rate(1.0)).subscribe(functools.partial(view.on_rate, t.session_id))
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        connection = merged.connect()
        if connection is not None:
            subscriptions.add(connection)
        try:
            _display(view, caught)
            if finish is not None:
                finish()
                view.done.wait(5.0)
        finally:
            subscriptions.dispose()
        _relay(view, caught)


def _of_session(session_id: str, *, data_only: bool = False) -> Callable[[LensEvent], bool]:
    """A predicate: the event belongs to ``session_id`` (and is not a control frame)."""

    def test(event: LensEvent) -> bool:
        if event.session_id != session_id:
            return False
        return not (data_only and event.type in CONTROL_TYPES)

    return test


def _display(view: DemoView, caught: list[warnings.WarningMessage]) -> None:
    """Show the view until the demo's time is up (or every stream ended)."""
    deadline = view.started + view.seconds
    if view.plain:
        next_status = time.monotonic() + 5.0
        while not view.done.is_set() and time.monotonic() < deadline:
            view.done.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            _relay(view, caught)
            if time.monotonic() >= next_status:
                next_status += 5.0
                view.say(view.status_line())
        return
    from rich.console import Console
    from rich.live import Live

    console = Console(file=view.out)
    with Live(view.render(), console=console, refresh_per_second=4, transient=False) as live:
        while not view.done.is_set() and time.monotonic() < deadline:
            view.done.wait(min(0.25, max(0.0, deadline - time.monotonic())))
            _relay(view, caught)
            live.update(view.render())
        live.update(view.render())


def _relay(view: DemoView, caught: list[warnings.WarningMessage]) -> None:
    # Warnings from the stream threads would tear the live view: show them as log lines.
    while caught:
        message = str(caught.pop(0).message)
        if "sends no event ids" in message and view.has_ids(message):
            # The client can say so when a drop hits before its cursor is known; this view
            # saw the ids, and its loss measure (by content) shows whether anything is missing.
            continue
        view.say(f"warning: {message}")


def _print_summary(view: DemoView, out: IO[str], *, measured: bool) -> None:
    with view.lock:
        lines = [f"summary after {view.elapsed():.1f} s:"]
        for t in view.tracks.values():
            line = (
                f"  {t.name:<9} {t.session_id}  {t.lens:<17} {t.channel:<7} "
                f"{t.events} events delivered"
            )
            if measured and t.sent_log is not None:
                measure = view.measure(t)
                line += f", {measure.sent} sent: {measure}"
            if t.failed:
                line += f"; failed: {t.failed}"
            lines.append(line)
            drops = f"{t.drops} drop" + ("" if t.drops == 1 else "s")
            if t.on_lost:
                drops += f" (lost batch: {t.on_lost})"
            lines.append(f"  {'':<9} {drops}" + "".join(f"; {r}" for r in t.resumes))
        lines.append(f"  windows of {view.window:g} s: {len(view.windows)}")
        for w in view.windows:
            votes = ", ".join(
                f"{view.tracks[sid].name} {_show(v, w.counts[sid])}" for sid, v in w.votes.items()
            )
            lines.append(f"    {w.label(view.window)}: vote {votes}")
        lines.append(f"  alerts (rising edges, held {ALERT_HOLD:g} s): {len(view.alerts)}")
    print("\n".join(lines), file=out, flush=True)
