"""An experiment's results folder: the settings it was started with (a rerun with other
settings is refused, so rows of different experiments never mix) and one JSON row per
measurement, appended and flushed as soon as it exists (a stopped run loses nothing)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from openended.errors import UserError
from openended.textfiles import write_atomically


class ExperimentError(UserError, ValueError):
    """Settings that do not match the folder's, or unusable input."""


class ResultsFile:
    """``settings.json`` and ``results.jsonl`` in `out_dir`.

    Args:
        out_dir: the experiment's folder (created).
        experiment: its kind ("collapse", "poison").
        settings: a dataclass of settings; JSON-compared with the stored ones.
    """

    def __init__(self, out_dir: Path, experiment: str, settings: object) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        wanted = {"experiment": experiment, **json.loads(json.dumps(asdict(settings)))}  # type: ignore[call-overload]
        settings_path = self.dir / "settings.json"
        if settings_path.exists():
            stored = json.loads(settings_path.read_text())
            if stored != wanted:
                changed = sorted(
                    k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k)
                )
                differences = ", ".join(
                    f"{k}: {stored.get(k)!r} -> {wanted.get(k)!r}" for k in changed
                )
                raise ExperimentError(
                    f"{settings_path}: this folder holds an experiment with other settings "
                    f"({differences}); use another folder"
                )
        else:
            settings_path.write_text(json.dumps(wanted, indent=1) + "\n")
        self.path = self.dir / "results.jsonl"
        self._rows: list[dict[str, Any]] = []
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    self._rows.append(json.loads(line))
                except json.JSONDecodeError:
                    # only a last line cut off by a crash is forgiven (it is measured again)
                    if number != len(lines):
                        raise ExperimentError(f"{self.path}: line {number} is not JSON") from None
            self._rewrite()

    def get(self, **key: Any) -> dict[str, Any] | None:
        """The first row whose fields equal `key`."""
        for row in self._rows:
            if all(k in row and row[k] == v for k, v in key.items()):
                return row
        return None

    def add(self, row: dict[str, Any]) -> None:
        self.add_many([row])

    def add_many(self, rows: list[dict[str, Any]]) -> None:
        """Append rows in one write (a crash can cut only the last line)."""
        self._rows += rows
        with self.path.open("a") as f:
            f.write("".join(json.dumps(row) + "\n" for row in rows))
            f.flush()
            os.fsync(f.fileno())

    def discard(self, **key: Any) -> None:
        """Forget the rows whose fields equal `key` (a unit of work cut off midway)."""
        kept = [r for r in self._rows if not all(k in r and r[k] == v for k, v in key.items())]
        if len(kept) != len(self._rows):
            self._rows = kept
            self._rewrite()

    def count(self) -> int:
        return len(self._rows)

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def _rewrite(self) -> None:
        write_atomically(self.path, "".join(json.dumps(r) + "\n" for r in self._rows))
