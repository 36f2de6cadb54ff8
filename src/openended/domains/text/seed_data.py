"""Seed texts from JSONL, CSV, or a Hugging Face `datasets` dataset saved to disk."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from openended.errors import UserError
from openended.jsonl import read_jsonl
from openended.textfiles import read_text


class SeedDataError(UserError, ValueError):
    """Seed data that cannot be read; the message names the file, line and field."""


def read_seed_texts(
    path: str | Path, *, field: str = "text", limit: int | None = None
) -> list[str]:
    """The `field` of each record: a ``.jsonl`` file, a ``.csv`` file (with a header), or a
    folder written by ``datasets.Dataset.save_to_disk``."""
    path = Path(path)
    texts: list[str] = []
    if path.is_dir():
        try:
            from datasets import load_from_disk

            dataset = load_from_disk(str(path))
        except Exception as exc:  # datasets raises several kinds for a folder that is not one
            raise SeedDataError(f"{path}: not a saved Hugging Face dataset ({exc})") from None
        if hasattr(dataset, "keys"):  # a DatasetDict: take its first split
            dataset = dataset[next(iter(dataset.keys()))]
        if field not in dataset.column_names:
            raise SeedDataError(
                f"{path}: no column {field!r}; columns: {', '.join(dataset.column_names)}"
            )
        texts = [str(t) for t in dataset[field]]
    elif path.suffix == ".jsonl":
        for number, row in read_jsonl(path, SeedDataError):
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise SeedDataError(f"{path}: line {number}: no string field {field!r}")
            texts.append(row[field])
    elif path.suffix == ".csv":
        text = read_text(path, what="CSV file", error=SeedDataError)
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = list(reader.fieldnames or [])
        if field not in columns:
            raise SeedDataError(f"{path}: no column {field!r}; columns: {', '.join(columns)}")
        for number, row in enumerate(reader, 2):
            if not (row.get(field) or "").strip():
                raise SeedDataError(f"{path}: line {number}: column {field!r} is empty")
            texts.append(row[field])
    else:
        raise SeedDataError(f"{path}: seed data must be .jsonl, .csv, or a saved dataset folder")
    texts = [t.strip() for t in texts if t.strip()]
    return texts[:limit] if limit is not None else texts
