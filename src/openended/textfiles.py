"""Reading the user's text files: a missing, unreadable or non-UTF-8 file is a `UserError`
that names the file (and, for bad bytes, the line and column), never a UnicodeDecodeError.
Writing records that a kill must never leave half-written."""

from __future__ import annotations

from pathlib import Path

from openended.errors import UserError


class TextFileError(UserError, ValueError):
    """A file the user gave cannot be read as UTF-8 text."""


def read_text(
    path: str | Path, *, what: str = "file", error: type[Exception] = TextFileError
) -> str:
    """The whole file as text. `what` says what the file is for ("evaluator", "config");
    `error` is the exception class raised (a module's own, or `TextFileError`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    return decode(data, path, what=what, error=error)


def decode(
    data: bytes, path: str | Path, *, what: str = "file", error: type[Exception] = TextFileError
) -> str:
    """`data` (the contents of `path`) as UTF-8 text, or `error` saying where the first
    bad byte is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise error(
            f"{path}: line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8; "
            f"save the {what} as UTF-8"
        ) from None


def write_atomically(path: Path, text: str) -> None:
    """Write `text` under a temporary name beside `path` and rename it into place, so that
    a reader (or a rerun after a kill) sees the old file or the new one, never half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
