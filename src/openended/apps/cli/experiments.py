"""Experiments on self-training: `experiment collapse | poison`."""

from __future__ import annotations

import argparse
from pathlib import Path

from openended.apps.cli.common import console, say
from openended.apps.experiments.results import ExperimentError


def _experiment_settings(cls: type, **values: object) -> object:
    """Settings from the command line; a bad value is a user error naming the flag."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None


def cmd_experiment_collapse(args: argparse.Namespace) -> int:
    from openended.apps.experiments.collapse import CollapseSettings, run_collapse
    from openended.apps.experiments.models import EmbeddedModel, NGramModel
    from openended.apps.experiments.report import collapse_report

    settings = _experiment_settings(
        CollapseSettings,
        model=args.model,
        policies=tuple(args.policies),
        generations=args.generations,
        seeds=args.seeds,
        real_lines=args.real_lines,
        heldout_lines=args.heldout_lines,
        prompts=args.prompts,
        samples_per_prompt=args.samples_per_prompt,
        k=args.k,
        embedding_sample=args.embedding_sample,
        order=args.order,
    )
    assert isinstance(settings, CollapseSettings)

    def factory() -> NGramModel | EmbeddedModel:
        if settings.model == "embedded":
            return EmbeddedModel(args.out / "model-work", progress=None)
        return NGramModel(settings.world.vocabulary, order=settings.order)

    embed = None
    if settings.embedding_sample > 0:
        from openended.embeddings import Embedder

        embed = Embedder.shared().encode
    rows = run_collapse(settings, args.out, factory, embed=embed, progress=say)
    summary = collapse_report(rows, args.out, settings.k)
    console.print(summary.read_text(), markup=False, highlight=False)
    say(f"results: {args.out / 'results.jsonl'}  plot: {args.out / 'collapse.png'}")
    return 0


def cmd_experiment_poison(args: argparse.Namespace) -> int:
    from openended.apps.experiments.poison import PoisonSettings, run_poison
    from openended.apps.experiments.report import poison_report

    settings = _experiment_settings(
        PoisonSettings,
        attacks=tuple(args.attacks),
        fractions=tuple(args.fractions),
        seeds=args.seeds,
        generations=args.generations,
        real_lines=args.real_lines,
        real_puzzles=args.real_puzzles,
        raters=args.raters,
    )
    assert isinstance(settings, PoisonSettings)
    rows = run_poison(settings, args.out, progress=say)
    summary = poison_report(rows, args.out)
    console.print(summary.read_text(), markup=False, highlight=False)
    say(f"results: {args.out / 'results.jsonl'}  plots: {args.out}/poison-*.png")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    experiment = sub.add_parser(
        "experiment", help="how self-training goes wrong: model collapse, poisoning"
    )
    experiments = experiment.add_subparsers(dest="experiment", required=True)
    collapse = experiments.add_parser(
        "collapse", help="train each generation on the last one's samples, four data policies"
    )
    collapse.add_argument("--out", type=Path, default=Path("runs/collapse"))
    collapse.add_argument("--model", choices=("ngram", "embedded"), default="ngram")
    collapse.add_argument(
        "--policies",
        nargs="+",
        default=["replace", "accumulate", "accumulate-verify", "qd-curated"],
        choices=["replace", "accumulate", "accumulate-verify", "qd-curated"],
    )
    collapse.add_argument("--generations", type=int, default=10)
    collapse.add_argument("--seeds", type=int, default=5)
    collapse.add_argument(
        "--real-lines", type=int, default=1000, help="also samples per generation"
    )
    collapse.add_argument("--heldout-lines", type=int, default=1000)
    collapse.add_argument("--prompts", type=int, default=100, help="held-out pass@k prompts")
    collapse.add_argument("--samples-per-prompt", type=int, default=10)
    collapse.add_argument("--k", type=int, default=5, help="pass@k (pass@1 is reported too)")
    collapse.add_argument(
        "--embedding-sample", type=int, default=200, help="lines embedded (0: no dispersion)"
    )
    collapse.add_argument("--order", type=int, default=5, help="n-gram order")
    collapse.set_defaults(func=cmd_experiment_collapse)
    poison = experiments.add_parser(
        "poison",
        help="poisoned data, vacuous puzzles and flipped raters, with and without defences",
    )
    poison.add_argument("--out", type=Path, default=Path("runs/poison"))
    poison.add_argument(
        "--attacks",
        nargs="+",
        default=["wrong-answers", "initial-errors", "vacuous-puzzles", "flipped-raters"],
        choices=["wrong-answers", "initial-errors", "vacuous-puzzles", "flipped-raters"],
    )
    poison.add_argument("--fractions", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3, 0.5])
    poison.add_argument("--seeds", type=int, default=5)
    poison.add_argument("--generations", type=int, default=5)
    poison.add_argument("--real-lines", type=int, default=1000)
    poison.add_argument("--real-puzzles", type=int, default=300)
    poison.add_argument("--raters", type=int, default=10)
    poison.set_defaults(func=cmd_experiment_poison)
