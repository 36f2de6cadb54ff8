"""Text: `augment` (diverse data along user-defined axes)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from openended import api
from openended.apps.cli.common import add_budget, add_set, console, run_search
from openended.config import load_config


def cmd_augment(args: argparse.Namespace) -> int:
    from openended.apps.augment import augment_config, export_augmented
    from openended.domains.text.axes import load_task

    load_task(args.axes)  # a bad axes file fails here, before any model is loaded
    config = augment_config(
        args.data,
        args.axes,
        text_field=args.field,
        runs_dir=args.runs_dir,
        name=args.name,
        batch_size=args.batch_size,
        model=args.model,
        seed=args.seed,
    )
    limits = {
        key: value
        for key in ("max_evaluations", "max_lm_calls", "max_seconds")
        if (value := getattr(args, key)) is not None
    }
    if limits:  # a budget you set is the only one (8 LM calls otherwise)
        config["budget"] = limits
    if args.target_score is not None:
        config["budget"]["target_score"] = args.target_score
    resolved = load_config(config, args.set or [])
    runs: list[api.RunResult] = []

    def start(**kwargs: Any) -> api.RunResult:
        runs.append(api.run(resolved, **kwargs))
        return runs[-1]

    status = run_search(start, resolved.budget, report=not args.no_report)
    if runs and runs[-1].outcome.ok:
        for kind, path in export_augmented(runs[-1].run_dir).items():
            console.print(f"{kind}: {path}", markup=False)
    return status


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    augment = sub.add_parser(
        "augment",
        help="place a dataset on your axes, fill the empty cells, export it",
        description="Place DATA on the axes of --axes, search for texts in the empty cells, "
        "export the archive.\nBudget: 8 LM calls unless you set one.",
    )
    augment.add_argument("data", type=Path, help="seed data: .jsonl, .csv, or a saved HF dataset")
    augment.add_argument("--axes", type=Path, required=True, help="TOML: task, quality, [[axes]]")
    augment.add_argument("--field", default="text", help="the field holding the text")
    augment.add_argument("--batch-size", type=int, default=16)
    augment.add_argument("--model", default="embedded")
    augment.add_argument("--name")
    augment.add_argument("--runs-dir", type=Path, default=Path("runs"))
    augment.add_argument("--seed", type=int, default=0)
    add_set(augment)
    add_budget(augment)
    augment.set_defaults(func=cmd_augment)
