"""Dataset augmentation: place the seed data on the grid of the axes, then search to fill
the cells it leaves empty; export the result with provenance as JSONL and as a Hugging
Face dataset with a short data card."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def augment_config(
    data: Path,
    axes_file: Path,
    *,
    text_field: str = "text",
    runs_dir: Path = Path("runs"),
    name: str | None = None,
    max_lm_calls: int = 8,
    batch_size: int = 16,
    model: str = "embedded",
    seed: int = 0,
) -> dict[str, Any]:
    """The run configuration of an augmentation."""
    return {
        "name": name or f"augment-{time.strftime('%Y%m%d-%H%M%S')}",
        "runs_dir": str(runs_dir),
        "seed": seed,
        "model": {"name": model},
        "search": {"batch_size": batch_size},
        "budget": {"max_lm_calls": max_lm_calls, "max_seconds": 0},
        "domain": {
            "name": "text",
            "axes_file": str(Path(axes_file).resolve()),
            "seed_data": str(Path(data).resolve()),
            "text_field": text_field,
        },
    }


def export_augmented(run_dir: Path, *, out_dir: Path | None = None) -> dict[str, Path]:
    """Write ``augmented.jsonl``, a ``hf_dataset`` folder (``datasets`` format) and a
    ``README.md`` data card for the archive of a text run; returns their paths."""
    from datasets import Dataset

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "augmented"
    out.mkdir(parents=True, exist_ok=True)
    from openended.domains.text.domain import task_from_config
    from openended.run_dir import RunDir

    run = RunDir(run_dir)
    task = task_from_config(run.config().domain_options())  # type: ignore[arg-type]
    with run.store() as store:
        model_id = store.get_meta("model_id", "unknown")
        elite_ids = run.elite_ids(store)
        records = {r.id: r for r in store.candidates()}
    rows = []
    for cid in sorted(elite_ids):
        record = records[cid]
        metrics = record.metrics or {}
        row: dict[str, Any] = {
            "text": record.genome,
            "source": "seed" if record.operator == "seed" else "generated",
            "operator": record.operator,
            "parents": [records[p].genome for p in (record.parents or []) if p in records],
            "parent_ids": list(record.parents or []),
            "candidate_id": cid,
            "model": model_id,
            "quality": metrics.get("quality"),
            "judge_method": "logprobs" if metrics.get("judge_logprobs") else "parsed",
        }
        for axis in task.axes:  # the judge's choice (also with embedding descriptors)
            probabilities = {label: metrics.get(f"{axis.name}={label}") for label in axis.bins}
            row[axis.name] = max(axis.bins, key=lambda label: probabilities[label] or 0.0)
            row[f"{axis.name}_probabilities"] = probabilities
        rows.append(row)
    jsonl = out / "augmented.jsonl"
    with jsonl.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    hf = out / "hf_dataset"
    flat = [
        {
            **r,
            **{
                f"{a.name}_probabilities": json.dumps(r.get(f"{a.name}_probabilities"))
                for a in task.axes
            },
        }
        for r in rows
    ]
    Dataset.from_list(flat).save_to_disk(str(hf))
    card = out / "README.md"
    card.write_text(data_card(task, rows, model_id=model_id, run_dir=run_dir))
    return {"jsonl": jsonl, "hf_dataset": hf, "card": card}


def data_card(task: Any, rows: Sequence[dict[str, Any]], *, model_id: str, run_dir: Path) -> str:
    """A short data card: what, how, and what is covered."""
    seeds = [r for r in rows if r["source"] == "seed"]
    generated = [r for r in rows if r["source"] == "generated"]
    cells_seed = {tuple(r[a.name] for a in task.axes) for r in seeds}
    cells_all = {tuple(r[a.name] for a in task.axes) for r in rows}
    total = 1
    for a in task.axes:
        total *= len(a.bins)
    methods = sorted({r["judge_method"] for r in rows})
    lines = [
        "# Augmented dataset",
        "",
        f"Task: {task.task}. Quality criterion: {task.quality}.",
        "",
        f"Made with openended (QDAIF-style MAP-Elites) from the run `{run_dir.name}`: the seed",
        "data was placed on the grid of the axes below by a judge model, then the model wrote",
        "new items to fill the empty cells; one item per cell is kept (the best by quality).",
        "",
        f"- generator and judge model: {model_id} (judge read: {', '.join(methods)})",
        f"- items: {len(rows)} ({len(seeds)} from the seed data, {len(generated)} generated)",
        f"- cells covered: {len(cells_all)} of {total} (the seed data alone: {len(cells_seed)})",
        "",
        "## Axes",
        "",
    ]
    for a in task.axes:
        kind = "ordinal" if a.ordinal else "categorical"
        lines.append(f"- **{a.name}** ({kind}): {a.description} — {', '.join(a.bins)}")
    lines += [
        "",
        "## Fields",
        "",
        "`text`; `source` (seed or generated); `operator`, `parents`, `parent_ids` (provenance);",
        "`model`; `quality` (judge, 0-1); one column per axis with its bin and",
        "`<axis>_probabilities` (the judge's distribution over the bins); `judge_method`.",
        "",
        "Judges are language models and make mistakes; items are not checked by people.",
        "",
    ]
    return "\n".join(lines)


def run_augment(
    config: dict[str, Any], *, on_batch: Callable[[Any], None] | None = None
) -> tuple[Path, dict[str, Path]]:
    """Run the search of `augment_config` and export the result."""
    from openended import api

    result = api.run(config, on_batch=on_batch)
    return result.run_dir, export_augmented(result.run_dir)
