"""The ``rxlens`` command line.

Each subcommand lives in its own module ``rxlens/cli/_<name>.py`` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code.

Exit codes (documented in the README):

====  ==========================================================
0     success
1     an error rxlens reported (one line on stderr)
2     bad command-line usage
3     authentication failed (bad or missing API key)
4     not found (unknown session or lens)
5     the server could not be reached, or the connection failed
130   interrupted (Ctrl-C)
====  ==========================================================
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from rxlens import __version__
from rxlens.errors import (
    AuthenticationError,
    NotFound,
    RetriesExhausted,
    RxLensError,
    TransportError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 130

_COMMANDS = ("demo", "serve", "tail", "record", "replay", "fleet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxlens",
        description="Archetype AI Lens streams as ReactiveX observables.",
        epilog="Run 'rxlens demo' to see it work against the embedded emulator (no API key).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rxlens {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and debug logging"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"rxlens.cli._{name}")
        except ModuleNotFoundError as exc:  # a command still being built
            if exc.name != f"rxlens.cli._{name}":
                raise
            continue
        module.register(sub)
    return parser


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an error."""
    cause = error.last_error if isinstance(error, RetriesExhausted) else error
    if isinstance(cause, AuthenticationError):
        return EXIT_AUTH
    if isinstance(cause, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(cause, TransportError):
        return EXIT_UNREACHABLE
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RxLensError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"rxlens {args.command}: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
