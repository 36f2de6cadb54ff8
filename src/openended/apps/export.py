"""Export a run's candidates (or only its elites) as JSON lines or Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pandas as pd

from openended.store.run_store import RunStore

FORMATS = ("jsonl", "parquet")


def export_run(
    run_dir: Path,
    *,
    fmt: Literal["jsonl", "parquet"] = "jsonl",
    output: Path | None = None,
    elites_only: bool = False,
) -> Path:
    """Write the candidates table (parents, descriptors and metrics decoded from JSON) to
    ``exports/candidates.<fmt>`` (or `output`); returns the path written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    with RunStore(run_dir) as store:
        frame = store.frame("candidates")
        if elites_only:
            from openended.run_dir import RunDir

            ids = RunDir(run_dir).elite_ids(store)
            frame = frame[frame["id"].isin(ids)]
    for column in ("parents", "descriptors", "metrics", "lm_faults"):
        frame[column] = [json.loads(v) if isinstance(v, str) else None for v in frame[column]]
    frame["added"] = frame["added"].astype(bool)
    name = "elites" if elites_only else "candidates"
    path = Path(output) if output is not None else run_dir / "exports" / f"{name}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "Parquet export needs pyarrow: pip install 'openended[parquet]'"
            ) from None
        pd.DataFrame(frame).to_parquet(path, index=False)
    return path
