"""The `openended` command. Thin: parse arguments, build the config, call the library.
Each command group lives in its own module with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
from collections.abc import Sequence

from rich.markup import escape

from openended import __version__
from openended.apps.cli import (
    augment,
    experiments,
    models,
    puzzles,
    rank,
    runs,
    search,
    training,
)
from openended.apps.cli.common import Parser, console
from openended.errors import OpenendedError

GROUPS = (search, runs, models, puzzles, training, augment, rank, experiments)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="openended", description="Open-ended search with language models.")
    parser.add_argument("--version", action="version", version=f"openended {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    _add_debug(sub)
    return parser


DEBUG_HELP = "on an error, show Python's traceback (also: OPENENDED_DEBUG=1)"


def _add_debug(subparsers: argparse._SubParsersAction) -> None:
    """`--debug` after any subcommand too (`openended evolve ... --debug`)."""
    for parser in subparsers.choices.values():
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug(action)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; every failure is reported in words (exit 2 for what the user gave,
    1 for an internal error), never as a Python traceback unless ``--debug`` is given."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False) or os.environ.get("OPENENDED_DEBUG"))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        if debug:
            raise
        code, message = explain(exc)
        _error(message)
        return code


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit status, one line) for an exception that ends a command."""
    if isinstance(exc, OpenendedError):
        return 2, str(exc)
    if isinstance(exc, OSError):
        return 2, describe_os_error(exc)
    if isinstance(exc, sqlite3.Error):
        return 2, f"a SQLite database could not be used: {exc}"
    name = type(exc).__name__
    return 1, f"internal error: {name}: {exc} (run again with --debug to see where)"


def describe_os_error(exc: OSError) -> str:
    """An OSError as one line naming the file and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or str(exc)
    advice = {
        errno.ENOSPC: "free some disk space, then run again (committed work is kept)",
        errno.EDQUOT: "free some disk space, then run again (committed work is kept)",
        errno.EROFS: "the file system is read-only: use a writable folder (e.g. --runs-dir)",
        errno.EACCES: "no permission: use a folder you can write to, or fix its permissions",
        errno.EPERM: "not permitted: use a folder you can write to, or fix its permissions",
    }.get(exc.errno or 0, "")
    return f"{where}{reason}" + (f"; {advice}" if advice else "")


def _error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
