"""Searching: `run`, `evolve`, `resume`."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from openended import api
from openended.apps.cli.common import (
    BACKEND_HELP,
    BACKENDS,
    add_budget,
    add_executor,
    add_set,
    flag_overrides,
    run_search,
)
from openended.config import load_config
from openended.run_dir import RunDir


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, flag_overrides(args))
    return run_search(partial(api.run, config), config.budget, report=not args.no_report)


def cmd_evolve(args: argparse.Namespace) -> int:
    overrides = flag_overrides(args)
    overrides += [
        'domain.name="program"',
        f"domain.initial={json.dumps(str(args.initial.resolve()))}",
        f"domain.evaluator={json.dumps(str(args.evaluator.resolve()))}",
    ]
    if args.function:
        overrides.append(f"domain.function={json.dumps(args.function)}")
    config = load_config(args.config, overrides)
    return run_search(partial(api.run, config), config.budget, report=not args.no_report)


def cmd_resume(args: argparse.Namespace) -> int:
    overrides = flag_overrides(args)
    config = RunDir(args.run_dir).config(overrides)
    start = partial(api.resume, args.run_dir, overrides=overrides, fork=args.fork)
    return run_search(start, config.budget, report=not args.no_report)


def _add_run_flags(p: argparse.ArgumentParser, *, name_default: str) -> None:
    """The flags of a new run (`run`, `evolve`): config, name, seed, model, folder."""
    p.add_argument("--config", type=Path, help="TOML config file")
    p.add_argument(
        "--name", help=f"run name: its folder under --runs-dir (default: {name_default})"
    )
    p.add_argument("--seed", type=int, help="the run's seed (default: 0)")
    p.add_argument(
        "--model",
        help="'embedded', a local transformers model (path or HF id), or the base URL of an "
        "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )
    p.add_argument("--model-name", help="the server's model name (with an http(s) --model)")
    p.add_argument("--backend", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--runs-dir", type=Path, help="where run folders go (default: runs)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `openended` parser."""
    run = sub.add_parser(
        "run",
        help="run a search (default: symbolic regression, embedded model)",
        description="Run an LLM-guided quality-diversity search (MAP-Elites) from a TOML config; "
        "with none, the default:\nsymbolic regression of Feynman I.13.4 with the embedded "
        "model, 1000 evaluations.",
        epilog="examples:\n  openended run\n  openended run --max-evaluations 200 --name quick"
        "\n  openended run --config my_run.toml --set search.batch_size=8",
    )
    _add_run_flags(run, name_default="<domain>-<timestamp>")
    add_set(run)
    add_budget(run)
    add_executor(run)
    run.set_defaults(func=cmd_run)

    evolve = sub.add_parser(
        "evolve",
        help="evolve a program against your evaluator (FunSearch / AlphaEvolve style)",
        description="Evolve the EVOLVE-BLOCK (or --function) of INITIAL: the model proposes "
        "diffs and rewrites,\nEVALUATOR's evaluate(program_path) -> dict scores each in the "
        "sandbox; the best is written\nto RUN_DIR/best_program.py.",
        epilog="example:\n  openended evolve examples/bin_packing/initial_program.py "
        "examples/bin_packing/evaluator.py \\\n      --function priority --max-seconds 600",
    )
    evolve.add_argument("initial", type=Path, help="initial program (EVOLVE-BLOCK or --function)")
    evolve.add_argument("evaluator", type=Path, help="file with evaluate(program_path) -> dict")
    evolve.add_argument("--function", help="evolve this top-level function")
    _add_run_flags(evolve, name_default="program-<timestamp>")
    add_set(evolve)
    add_budget(evolve)
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
    add_budget(resume)
    add_executor(resume)
    resume.set_defaults(func=cmd_resume)
