"""Reading JSON-lines files with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openended.textfiles import read_text


def read_jsonl(path: str | Path, error: type[Exception]) -> list[tuple[int, Any]]:
    """(line number, value) for each non-blank line; `error` is raised with the file and
    line of the first line that is not JSON, or when the file cannot be read."""
    path = Path(path)
    text = read_text(path, what="JSONL file", error=error)
    rows = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 is text
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise error(f"{path}: line {number}: not JSON: {exc.msg}") from None
    return rows
