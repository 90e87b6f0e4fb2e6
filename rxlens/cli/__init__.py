"""The ``rxlens`` command line.

Each subcommand lives in its own module ``rxlens/cli/_<name>.py`` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code.

Exit codes (``rxlens --help`` lists them, the README too): see :data:`EXIT_CODES`, one code
per cause.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from rxlens import __version__
from rxlens.cli._common import MissingAPIKey, describe_failure
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

#: Every exit code and its cause, once each; ``rxlens --help`` prints this table.
EXIT_CODES = (
    (EXIT_OK, "success (tail/record: the stream ended or -n N was reached)"),
    (EXIT_ERROR, "an error rxlens reported: a bad recording, a file that exists, a bad lens"),
    (EXIT_USAGE, "bad command-line usage (an unknown option, a port out of range, ...)"),
    (EXIT_AUTH, "authentication: the API key is missing, or the server rejected it"),
    (EXIT_NOT_FOUND, "not found (unknown session or lens)"),
    (EXIT_UNREACHABLE, "the server could not be reached, or the connection failed for good"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); tail and record first say how much they handled"),
)


def _epilog() -> str:
    rows = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES)
    return (
        "Run 'rxlens demo' to see it work against the embedded emulator (no API key).\n"
        "Run 'rxlens COMMAND --help' for a command's options and examples.\n\n"
        f"exit codes:\n{rows}\n"
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: what is wrong, where help is.

    argparse prints the whole usage block first (five lines for ``serve``), which buries the
    one line that matters. Subcommand parsers are of the same class (``add_subparsers``
    makes them with ``type(self)``).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rxlens",
        description="Archetype AI Lens streams as ReactiveX observables.",
        epilog=_epilog(),
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
    # Every command's help points at the one list of exit codes, here in 'rxlens --help'.
    for command in sub.choices.values():
        if "rxlens --help" not in (command.epilog or ""):
            more = "Exit codes: see 'rxlens --help'."
            command.epilog = f"{command.epilog.rstrip()}\n\n{more}" if command.epilog else more
    return parser


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an error."""
    cause = error.last_error if isinstance(error, RetriesExhausted) else error
    if isinstance(cause, (AuthenticationError, MissingAPIKey)):
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
        print(error_line(args.command, exc), file=sys.stderr)
        return exit_code_for(exc)


def error_line(command: str, error: BaseException) -> str:
    """The one line a command prints for an error; a give-up starts with its cause in words."""
    if isinstance(error, RetriesExhausted):
        cause = describe_failure(error.last_error)
        return (
            f"rxlens {command}: error: gave up after {error.attempts} attempt(s) in "
            f"{error.elapsed:.0f} s: {cause} (last error: {error.last_error})"
        )
    return f"rxlens {command}: error: {error}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
