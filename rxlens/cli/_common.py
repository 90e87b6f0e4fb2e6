"""What the stream commands (``demo``, ``tail``, ``record``, ``replay``) share.

Connection options, the client they build, the retry policy a command line wants, one-line
event formatting, and a small thread-safe printer for status lines on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from reactivex import Observable

from rxlens._format import CONTROL_TYPES, clock, format_line, json_line, short_id, summary
from rxlens.client import ENV_API_KEY, ENV_ENDPOINT, LensClient
from rxlens.errors import (
    AuthenticationError,
    ConfigurationError,
    HeartbeatTimeout,
    HTTPStatusError,
    LensAPIError,
    NotFound,
    ReadTimeout,
    StreamClosed,
    TransportError,
)
from rxlens.retry import RetryPolicy, is_retryable
from rxlens.sse import ConnectionState

if TYPE_CHECKING:
    from rxlens.emulator import LensEmulator

#: Words of the client's warning that the server sends no event ids.
NO_IDS_TEXT = "sends no event ids"

#: How long the commands keep reconnecting through a run of failures before giving up.
GIVE_UP_AFTER = 120.0


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """``--api-key`` and ``--base-url``, with the environment variables as defaults."""
    parser.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help=f"Lens API key (default: ${ENV_API_KEY}); never printed",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help=f"API base URL (default: ${ENV_ENDPOINT}, else the vendor's; /api and /v0.5 work)",
    )


class MissingAPIKey(ConfigurationError):
    """No key on the command line nor in the environment (exit code 3, as a rejected key)."""


def make_client(args: argparse.Namespace) -> LensClient:
    """A :class:`LensClient` from ``--api-key`` / ``--base-url`` (or the environment).

    Raises:
        MissingAPIKey: neither ``--api-key`` nor ``$ATAI_API_KEY`` gives a key. Checked here,
            before any request, so the hint names what a command-line user can set (the
            library's own hint names ``api_key=``).
    """
    if not (args.api_key or os.environ.get(ENV_API_KEY, "").strip()):
        raise MissingAPIKey(f"no Lens API key: pass --api-key KEY or set {ENV_API_KEY}")
    return LensClient(api_key=args.api_key, base_url=args.base_url)


def port_number(text: str) -> int:
    """The ``type=`` of a ``--port`` option: a TCP port, 0 (any free one) to 65535.

    Checked by the parser, so a port out of range is a usage error (exit code 2) rather than
    an ``OverflowError`` from ``bind()``.
    """
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number (0 to 65535; 0 picks a free one)"
        ) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{port} is out of range (0 to 65535; 0 picks a free one)"
        )
    return port


def command_policy(opened: threading.Event) -> RetryPolicy:
    """The retry policy of a command-line stream.

    Before the first connection opened, a connection failure is not retried: a wrong base URL
    or a server that is down should be reported at once, not retried for minutes. After
    that, every retryable error is, for up to :data:`GIVE_UP_AFTER` seconds of consecutive
    failures. HTTP statuses that say "try later" (429, 5xx) are retried from the start.
    """

    def retryable(error: BaseException) -> bool:
        if not is_retryable(error):
            return False
        return opened.is_set() or not isinstance(error, TransportError)

    return RetryPolicy(base=0.5, cap=10.0, max_elapsed=GIVE_UP_AFTER, retryable=retryable)


def check_session(client: LensClient, session_id: str, *, check_channel: bool = True) -> None:
    """Fail early, with the command-line error for it, when the session cannot be read.

    Reads the session's lens configuration: a rejected key raises
    :class:`~rxlens.errors.AuthenticationError`, an unknown session
    :class:`~rxlens.errors.NotFound`, a server out of reach
    :class:`~rxlens.errors.TransportError`, and a lens that writes to the ``session.read``
    mailbox :class:`~rxlens.errors.ChannelError`. Any other answer lets the stream decide.
    """
    where = client.url("lens/sessions/metadata")
    try:
        client.sessions.lens_config(session_id)
    except LensAPIError as exc:
        if exc.status in (401, 403):
            raise AuthenticationError(exc.status, where, exc.message) from None
        if exc.status == 404:
            raise NotFound(exc.status, where, exc.message) from None
        return
    except TransportError as exc:
        raise TransportError(
            f"{exc}; check the base URL ({client.base_url}) and that the server is reachable"
        ) from None
    if check_channel:
        client.check_channel(session_id)


def add_channel_argument(parser: argparse.ArgumentParser) -> None:
    """``--channel auto|sse|mailbox``: which output channel of the session to read."""
    parser.add_argument(
        "--channel",
        choices=("auto", "sse", "mailbox"),
        default="auto",
        help="the session's output channel: the SSE consumer, the session.read mailbox, or "
        "(auto, the default) the one its lens writes to",
    )


def start_emulator(emulator: LensEmulator, host: str, port: int) -> None:
    """Start an emulator; a port that cannot be bound is one clear line, not a traceback."""
    try:
        emulator.start()
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def is_tty(stream: IO[str]) -> bool:
    """Whether ``stream`` is an interactive terminal (not a pipe, a file or CI)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class StatusPrinter:
    """Prints status lines (on stderr by default), one whole line at a time from any thread."""

    def __init__(self, stream: IO[str] | None = None, prefix: str = "rxlens") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            print(f"{self.prefix}: {message}", file=self.stream, flush=True)


class ResumeReporter:
    """Turns a stream's connection states into lines saying when it dropped and resumed.

    ``last_id`` reads the id of the last event the command received (the point a resume
    continues after). Call it as the ``on_state`` callback; it also sets ``opened`` at the
    first open connection (see :func:`command_policy`).
    """

    def __init__(self, say: Callable[[str], None], last_id: Callable[[], str | None]) -> None:
        self.say = say
        self.last_id = last_id
        self.opened = threading.Event()
        self.drops = 0
        self._dropped_at: float | None = None

    def __call__(self, state: ConnectionState) -> None:
        if state.kind == "connecting" and state.note.startswith("reading the mailbox"):
            self.say(state.note)  # --channel auto chose the session.read mailbox
        if state.kind == "open":
            self.opened.set()
            if self._dropped_at is not None:
                took = time.monotonic() - self._dropped_at
                self._dropped_at = None
                after = state.last_event_id or self.last_id() or "-"
                self.say(f"resumed after id {after} in {took:.1f} s")
        elif state.kind == "backing_off":
            self.drops += 1
            if self._dropped_at is None:
                self._dropped_at = time.monotonic()
            reason = describe_failure(state.error)
            delay = f"{state.delay:.1f} s" if state.delay is not None else "a moment"
            # The ids note is moot when this command has seen ids (it resumes from them).
            note = f" ({state.note})" if state.note and not self.last_id() else ""
            self.say(
                f"connection lost after id {self.last_id() or '-'}: {reason}; "
                f"reconnecting in {delay} (attempt {state.attempt}){note}"
            )


_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)

#: What a failure's text says, in words a person reads at a terminal. The transport keeps only
#: the innermost reason of a failed request (its chain is cut so that no request detail
#: leaks), so the text is all there is to go by; the first pattern that matches wins.
_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("connection refused", "errno 111", "errno 61", "winerror 10061"), "connection refused"),
    (
        (
            "name or service not known",
            "nodename nor servname",
            "temporary failure in name resolution",
            "nameresolutionerror",
            "getaddrinfo failed",
            "no address associated",
            "name resolution",
        ),
        "DNS failure (the host name did not resolve)",
    ),
    (("ssl", "tls", "certificate"), "TLS error"),
    (("timed out", "timeout"), "timed out"),
    (("connection reset", "errno 104", "errno 54"), "connection reset"),
    (("network is unreachable", "no route to host"), "network unreachable"),
    (
        ("remotedisconnected", "connection aborted", "incompleteread", "protocolerror"),
        "the server closed the connection",
    ),
)


def describe_failure(error: BaseException | None) -> str:
    """Why a connection failed, in words: ``connection refused``, ``timed out``, ``DNS
    failure``, ``TLS error``, ``HTTP 503``, ...; never a cut internal class name.

    Reads the typed error first (a status, a heartbeat timeout, a closed stream), then the
    words of the error and of its chain.
    """
    if error is None:
        return "no reason given"
    if isinstance(error, HTTPStatusError):
        return f"HTTP {error.status}"
    if isinstance(error, HeartbeatTimeout):
        return "no data nor heartbeat in time (heartbeat timeout)"
    texts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(texts) < 8:
        # URLs are left out: a host or path may contain any of the words looked for.
        texts.append(_URL.sub("", f"{type(seen).__name__}: {seen}").lower())
        seen = seen.__cause__ or seen.__context__
    text = " | ".join(texts)
    for needles, words in _CAUSES:
        if any(needle in text for needle in needles):
            return words
    if isinstance(error, StreamClosed):
        return "the server closed the stream"
    if isinstance(error, ReadTimeout):
        return "timed out"
    return _first_line(error)


def _first_line(error: BaseException | None) -> str:
    if error is None:
        return "no reason given"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 120 else text[:119] + "…"


def env_flag(name: str) -> bool:
    """Whether an environment variable is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


__all__ = [
    "CONTROL_TYPES",
    "GIVE_UP_AFTER",
    "ResumeReporter",
    "StatusPrinter",
    "add_connection_args",
    "check_session",
    "clock",
    "command_policy",
    "describe_failure",
    "env_flag",
    "format_line",
    "is_tty",
    "json_line",
    "make_client",
    "port_number",
    "run_stream",
    "short_id",
    "summary",
    "warnings_as_lines",
]


# --- running a stream to its end from a command ---------------------------------------------------


def run_stream(source: Observable[Any], on_next: Callable[[Any], None]) -> None:
    """Subscribe ``source`` and block until it completes; raise its error, if any.

    Items are handled on the stream's own thread. The main thread only waits, in short slices,
    so Ctrl-C (``KeyboardInterrupt``) is seen at once; the subscription is disposed whatever
    ends the wait.
    """
    done = threading.Event()
    errors: list[BaseException] = []

    def on_error(error: Exception) -> None:
        errors.append(error)
        done.set()

    subscription = source.subscribe(on_next, on_error, done.set)
    try:
        while not done.wait(0.2):
            pass
    finally:
        subscription.dispose()
    if errors:
        raise errors[0]


@contextmanager
def warnings_as_lines(
    say: Callable[[str], None], ids_seen: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Show warnings as ``warning: ...`` status lines instead of Python's file:line format.

    The "sends no event ids" warning is left out when ``ids_seen()`` says the command did
    receive ids: it resumes from them, so the warning does not apply.
    """
    previous = warnings.showwarning

    def show(message: Warning | str, *_: Any, **__: Any) -> None:
        if NO_IDS_TEXT in str(message) and ids_seen():
            return
        say(f"warning: {message}")

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
