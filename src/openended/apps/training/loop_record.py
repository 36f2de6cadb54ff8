"""The record file of a training loop (``loop.json``, ``solve_loop.json``): its settings and
its finished steps, rewritten atomically after every step, and refused when a rerun asks
for other settings (a rerun with the same ones skips the finished steps)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from openended.textfiles import write_atomically


def read_loop_record(
    path: Path, settings: Mapping[str, Any], keys: Iterable[str], error: type[Exception]
) -> dict[str, Any]:
    """The record at `path` (empty when there is none); `error` names the `keys` of
    `settings` that differ from the record's."""
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    stored = data.get("settings", {})
    changed = [key for key in keys if stored.get(key) != settings.get(key)]
    if changed:
        raise error(
            f"{path} was made with other settings ({', '.join(changed)}); "
            "use another --out folder to start a new loop"
        )
    return data


def write_loop_record(path: Path, settings: Mapping[str, Any], **steps: Any) -> None:
    """Write the settings and the steps (lists of JSON-able objects) in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps({"settings": dict(settings), **steps}, indent=1))
