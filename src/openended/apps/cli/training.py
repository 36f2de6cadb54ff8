"""Training: `finetune` (on a run or pairs), `improve` (explore -> verify -> fine-tune loops)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openended.apps.cli.common import console, flag_overrides, print_line, settings_from
from openended.config import ConfigError
from openended.lm import embedded

if TYPE_CHECKING:
    from openended.apps.training.finetune import FinetuneSettings


def cmd_finetune(args: argparse.Namespace) -> int:
    from openended.apps.training.finetune import finetune, read_examples, read_preferences
    from openended.apps.training.pairs import (
        select_improvement_preferences,
        select_pairs,
        select_preferences,
        write_pairs,
        write_preferences,
    )

    selection = None
    dpo = args.objective == "dpo"
    if args.data is not None:
        examples = read_preferences(args.data) if dpo else read_examples(args.data)
        out = args.out or args.data.with_suffix("") / "finetuned"
    elif args.run_dir is None:
        raise ConfigError("give RUN_DIR (a run directory) or --data FILE.jsonl")
    elif dpo:
        if args.pairs == "solutions":
            raise ConfigError("--objective dpo trains on preference pairs: drop --pairs solutions")
        improved = args.select == "improved"
        chooser = select_improvement_preferences if improved else select_preferences
        preferred = chooser(
            args.run_dir, max_per_prompt=args.max_per_parent, min_pairs=args.min_pairs
        )
        examples = preferred.preferences
        out = args.out or args.run_dir / "finetuned"
        console.print(f"{args.run_dir}: {preferred.summary()}")
        if args.export is not None:
            write_preferences(args.export, preferred.preferences)
            print(args.export)
            return 0
    elif args.pairs == "solutions":
        from openended.apps.training.puzzle_data import examples_from_sources, sources_from_run

        if args.select == "improved":
            raise ConfigError("--pairs solutions takes --select archive or --select valid")
        select = "elites" if args.select == "archive" else "valid"
        examples = examples_from_sources(sources_from_run(args.run_dir, select=select))
        out = args.out or args.run_dir / "finetuned"
    else:
        selection = select_pairs(
            args.run_dir,
            select=args.select,
            max_per_parent=args.max_per_parent,
            min_pairs=args.min_pairs,
        )
        examples = selection.examples
        out = args.out or args.run_dir / "finetuned"
        console.print(f"{args.run_dir}: {selection.summary()}")
        if args.export is not None:
            write_pairs(args.export, selection.examples, selection.ids)
            print(args.export)
            return 0
    base = embedded.resolve_model(args.model)
    settings = _finetune_settings(
        args,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
    )
    settings.seed = args.seed
    console.print(
        f"fine-tuning {args.model} on {len(examples)} examples ({args.method}, {args.objective})"
    )
    result = finetune(base, examples, out, settings, progress=lambda line: console.print(line))
    if selection is not None:  # what the model learnt from, beside it
        write_pairs(Path(out) / "training_pairs.jsonl", selection.examples, selection.ids)
    console.print(f"{result.steps} steps in {result.seconds:.0f}s")
    print(result.model_dir)
    return 0


def cmd_improve(args: argparse.Namespace) -> int:
    from openended.apps.training.generate_loop import ImproveLoop, ImproveSettings

    if args.objective == "dpo" and (args.solve is not None or args.puzzles is not None):
        raise ConfigError(
            "--objective dpo is for the search loop (--config): the puzzle loops train on "
            "verified solutions and puzzles, which have no rejected counterpart"
        )
    if args.solve is not None:
        return _improve_solve(args)
    if args.puzzles is None:
        return _improve_search(args)
    settings = settings_from(
        ImproveSettings,
        args,
        *("held_out", "eval_puzzles", "samples", "generate_calls", "batch_size"),
        *("max_seeds", "solver_attempts", "with_seeds"),
        puzzles=args.puzzles,
        out_dir=args.out,
        model=args.model or "embedded",
        iterations=args.iterations or 1,
        arms=_arms(args, ("qd", "naive")),
        seed=args.seed or 0,
        finetune=_finetune_settings(args),
    )
    loop = ImproveLoop(settings, log=print_line)
    _print_steps(loop.run(), lambda step: step.pass_at)
    console.print(f"results: {loop.record_path}  plot: {loop.out / 'improve.png'}")
    return 0


def _print_steps(steps: Iterable[Any], figures: Callable[[Any], Mapping[str, float]]) -> None:
    """One JSON line per finished step of a loop: arm, iteration and its figures."""
    for step in steps:
        print(json.dumps({"arm": step.arm, "iteration": step.iteration, **figures(step)}))


def _finetune_settings(args: argparse.Namespace, **more: Any) -> FinetuneSettings:
    from openended.apps.training.finetune import FinetuneSettings

    return FinetuneSettings(
        method=args.method,
        epochs=args.epochs,
        objective=getattr(args, "objective", "sft"),
        beta=getattr(args, "beta", 0.1),
        **more,
    )


def _improve_solve(args: argparse.Namespace) -> int:
    """`openended improve --solve PUZZLES`: expert iteration on verified solutions."""
    from openended.apps.training.solve_loop import SolveLoop, SolveLoopSettings, run_solve_seeds

    settings = settings_from(
        SolveLoopSettings,
        args,
        *("held_out", "train_puzzles", "max_per_puzzle", "eval_puzzles", "max_tokens"),
        "min_pairs",
        puzzles=args.solve,
        out_dir=args.out,
        model=args.model or "embedded",
        iterations=args.iterations or 2,
        arms=_arms(args, ("tuned", "control", "selfplay"), default=("tuned", "control")),
        samples=args.train_samples,
        eval_samples=args.samples,
        seed=args.seed or 0,
        finetune=_finetune_settings(args),
    )
    return _run_loop(args, settings, SolveLoop, run_solve_seeds, lambda step: step.pass_at)


def _run_loop(
    args: argparse.Namespace,
    settings: Any,
    loop_class: Callable[..., Any],
    run_seeds: Callable[..., tuple[Any, Iterable[Any]]],
    figures: Callable[[Any], Mapping[str, float]],
) -> int:
    """Run a tuned-vs-control loop once, or once per ``--seeds`` pooled; print its steps
    (one loop), its effects with their intervals, and where the results are."""
    if args.seeds:
        _, effects = run_seeds(settings, args.seeds, log=print_line)
        _print_effects(effects)
        console.print(f"results: {settings.out_dir / 'effects.json'}")
        return 0
    loop = loop_class(settings, log=print_line)
    _print_steps(loop.run(), figures)
    _print_effects(loop.effects())
    console.print(f"results: {loop.record_path}  plots: {loop.out}")
    return 0


def _arms(
    args: argparse.Namespace, allowed: tuple[str, ...], default: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """The --arms this loop has (all of `allowed` by default): others are refused."""
    arms = tuple(args.arms or default or allowed)
    wrong = [a for a in arms if a not in allowed]
    if wrong:
        raise ConfigError(f"--arms {wrong[0]}: this loop's arms are {', '.join(allowed)}")
    return arms


def _print_effects(effects: Iterable[Any]) -> None:
    """Each effect with its interval, and whether it may be claimed."""
    for effect in effects:
        console.print(effect.line(), highlight=False)


def _improve_search(args: argparse.Namespace) -> int:
    """`openended improve --config RUN.toml`: the loop for any domain's search."""
    from openended.apps.training.search_loop import (
        LoopSettings,
        SearchImproveLoop,
        run_search_seeds,
    )

    settings = settings_from(
        LoopSettings,
        args,
        *("completions", "select", "max_per_parent", "min_pairs", "continual"),
        config=args.config,
        out_dir=args.out,
        overrides=tuple(flag_overrides(args)),
        iterations=args.iterations or 2,
        finetune=_finetune_settings(args),
    )
    return _run_loop(args, settings, SearchImproveLoop, run_search_seeds, lambda step: step.metrics)


def _objective_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--objective",
        choices=["sft", "dpo"],
        default="sft",
        help="sft: imitate the kept children; dpo: preference pairs. With --select improved "
        "(the default) a child that beat its parent over its prompt's others (EvoTune; in a "
        "menu, over the other options); otherwise a valid child over its prompt's failed "
        "ones and near-copies (--data reads TRL's prompt/chosen/rejected JSONL, e.g. "
        "`openended rank --export`)",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=0.1,
        help="DPO: how far from the base model (smaller: further)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    tune = sub.add_parser(
        "finetune",
        help="fine-tune a model on a run's verified children (TRL + LoRA), any domain",
        description="Build prompt -> completion pairs from a run's valid children (the "
        "operator's prompt, the model's completion; deduplicated by normalised genome, at "
        "most --max-per-parent per parent) and fine-tune a model on them. Example: "
        "openended finetune runs/my-run --select improved --out runs/my-run/tuned",
    )
    tune.add_argument("run_dir", type=Path, nargs="?", help="a run directory (any domain)")
    tune.add_argument("--data", type=Path, help="JSONL of prompt/completion pairs instead")
    tune.add_argument(
        "--select",
        choices=["improved", "archive", "valid"],
        default="improved",
        help="children that beat their best parent; that entered the archive; every valid one",
    )
    tune.add_argument(
        "--pairs",
        choices=["operators", "solutions"],
        default="operators",
        help="operators: the operators' prompts and completions; solutions (puzzles runs): "
        "solve prompts and verified solutions of the run's puzzles",
    )
    tune.add_argument("--min-pairs", type=int, default=8, help="refuse to train on fewer")
    tune.add_argument("--max-per-parent", type=int, default=4, help="pairs one parent may give")
    tune.add_argument("--export", type=Path, help="write the pairs as JSONL and stop")
    tune.add_argument("--model", default="embedded", help="base model: 'embedded' or a folder")
    tune.add_argument("--out", type=Path, help="output model folder (default RUN_DIR/finetuned)")
    tune.add_argument("--method", choices=["lora", "full"], default="lora")
    tune.add_argument("--epochs", type=float, default=2.0)
    tune.add_argument(
        "--lr", type=float, help="default 2e-4 (LoRA) or 3e-5 (full); DPO 5e-5 or 5e-6"
    )
    tune.add_argument("--batch-size", type=int, default=8)
    tune.add_argument(
        "--micro-batch-size",
        type=int,
        default=2,
        help="sequences per forward pass (the batch is accumulated); lower it if memory runs out",
    )
    tune.add_argument("--seed", type=int, default=0)
    _objective_flags(tune)
    tune.set_defaults(func=cmd_finetune)

    improve = sub.add_parser(
        "improve",
        help="explore -> verify -> finetune -> repeat, tuned vs control arm (any domain)",
        description="The search teaches its own model: each iteration searches for "
        "--completions with the current model, then fine-tunes the next model on the "
        "verified children of the runs so far; a control arm spends the same completions "
        "with the base model. Example: openended improve --config run.toml --iterations 2 "
        "--completions 128 --out runs/loop. With --puzzles: the puzzle-generation loop "
        "(QD vs naive generation, held-out pass@k).",
    )
    improve.add_argument("--config", type=Path, help="the search's TOML (default: the default)")
    improve.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    improve.add_argument("--puzzles", type=Path, help="P3-format JSON: the puzzle loop")
    improve.add_argument(
        "--solve", type=Path, help="P3-format JSON: expert iteration on verified solutions"
    )
    improve.add_argument(
        "--train-puzzles", type=int, default=200, help="--solve: training puzzles sampled"
    )
    improve.add_argument(
        "--train-samples", type=int, default=8, help="--solve: samples per training puzzle"
    )
    improve.add_argument(
        "--max-per-puzzle", type=int, default=4, help="--solve: pairs one puzzle may give"
    )
    improve.add_argument("--out", type=Path, default=Path("runs/improve"))
    improve.add_argument("--model", help="base model (default: the config's, or embedded)")
    improve.add_argument(
        "--iterations", type=int, help="rounds (default 2; --puzzles: 1, each trains)"
    )
    improve.add_argument(
        "--completions", type=int, default=128, help="completions per search and arm"
    )
    improve.add_argument(
        "--select", choices=["improved", "archive", "valid", "labelled"], default="improved",
        help="which verified children train the next model (labelled, --config with the "
        "menu operator: every option of the tuned arm's menus evaluated, each menu answered "
        "with its best option, at evaluator calls and no LM calls)",
    )  # fmt: skip
    improve.add_argument("--min-pairs", type=int, default=8, help="train on no fewer")
    improve.add_argument(
        "--continual", action="store_true",
        help="--config: train during one search (each iteration continues the last, EvoTune) "
        "instead of between searches that each start from the seeds",
    )  # fmt: skip
    improve.add_argument("--max-per-parent", type=int, default=4, help="pairs one parent may give")
    improve.add_argument(
        "--arms", nargs="+", choices=["qd", "naive", "tuned", "control", "selfplay"],
        help="--puzzles: qd and/or naive (default both); --solve: tuned, control and/or "
        "selfplay (self-written puzzles; default tuned control)",
    )  # fmt: skip
    improve.add_argument("--held-out", type=float, default=0.3, help="share of families held out")
    improve.add_argument("--eval-puzzles", type=int, default=40)
    improve.add_argument("--samples", type=int, default=10, help="samples per held-out puzzle")
    improve.add_argument(
        "--max-tokens", type=int, default=128, help="--solve: tokens per sampled solution"
    )
    improve.add_argument("--generate-calls", type=int, default=8, help="LM calls per iteration")
    improve.add_argument("--batch-size", type=int, default=16, help="completions per LM call")
    improve.add_argument("--max-seeds", type=int, default=32)
    improve.add_argument("--solver-attempts", type=int, default=4)
    improve.add_argument("--with-seeds", action="store_true", help="also train on seed puzzles")
    improve.add_argument("--method", choices=["lora", "full"], default="lora")
    improve.add_argument("--epochs", type=float, default=2.0)
    _objective_flags(improve)
    improve.add_argument("--seed", type=int, help="the search's seed (--puzzles: default 0)")
    improve.add_argument(
        "--seeds", type=int, nargs="+",
        help="--config, --solve: run the loop once per seed (in OUT/seed<N>) and pool the "
        "effects over them, each with its bootstrap 95%% interval (OUT/effects.json)",
    )  # fmt: skip
    improve.set_defaults(func=cmd_improve)
