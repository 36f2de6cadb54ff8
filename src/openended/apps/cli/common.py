"""What the commands share: the console, config overrides from flags, running a search with
progress, and the common flags."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from openended import api
from openended.apps.progress import SearchProgress, describe
from openended.config import BudgetConfig

console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides: the ``--set`` ones, then those of the flags a command has
    (``--name``, ``--seed``, ``--model``, ``--backend``, ``--runs-dir``, ...)."""
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
        ("max_evaluations", "budget.max_evaluations"),
        ("max_lm_calls", "budget.max_lm_calls"),
        ("max_seconds", "budget.max_seconds"),
        ("target_score", "budget.target_score"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            text = value if isinstance(value, int | float) else json.dumps(str(value))
            overrides.append(f"{key}={text}")
    return overrides


BACKENDS = ("auto", "ctranslate2", "transformers")


BACKEND_HELP = "a local model's backend (default auto: ctranslate2 where it can)"


COMPUTE_TYPE_HELP = "ctranslate2: the weights' type (default int8, 7-bit weights: see README)"


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


def finish_run(result: api.RunResult, *, report: bool) -> int:
    """Print how the run ended; the exit status: 0 when it stopped at its budget, else
    non-zero (130 / 143 interrupted, 3 the model failed), with how to continue."""
    outcome = result.outcome
    console.print(f"stopped: {outcome.stopped_by}", markup=False, highlight=False)
    if outcome.metrics is not None:
        console.print(describe(outcome.metrics), highlight=False)
    program = result.config.domain_name == "program"
    if result.best is not None:
        genome = "" if program else f"{result.best['genome']}  "  # (a program: its file below)
        console.print(
            f"best: {genome}(fitness {result.best['fitness']:.6g}, candidate "
            f"{result.best['candidate_id']})",
            markup=False,
            highlight=False,
        )
        fitted = _fitted_formula(result.run_dir, int(result.best["candidate_id"]))
        if fitted is not None and fitted != result.best["genome"]:
            console.print(f"fitted: {fitted}", markup=False, highlight=False)
    if report:
        from openended.apps.report import write_report

        console.print(f"report: {write_report(result.run_dir)}", markup=False)
    if program and result.best is not None:
        from openended.apps.evolve import write_best_program
        from openended.apps.generalisation import held_out_line

        console.print(f"best program: {write_best_program(result.run_dir)}", markup=False)
        held_out = held_out_line(result.run_dir)  # computed for the file, read back here
        if held_out is not None:
            console.print(f"held-out: {held_out}", markup=False, highlight=False)
    console.print(f"run directory: {result.run_dir}", markup=False)
    if outcome.ok:
        return 0
    console.print(f"continue with: openended resume {result.run_dir}", markup=False)
    for name, code in SIGNAL_EXITS.items():
        if name in outcome.stopped_by:
            return code
    return EXIT_MODEL_FAILED


def run_search(start: Callable[..., api.RunResult], budget: BudgetConfig, *, report: bool) -> int:
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
    return finish_run(result, report=report)


def settings_from(cls: type[T], args: argparse.Namespace, *same: str, **given: Any) -> T:
    """`cls(...)` (a settings dataclass) from the flags named in `same` (flag and field
    share the name) and the `given` values."""
    return cls(**{name: getattr(args, name) for name in same}, **given)


def print_line(line: str) -> None:
    """A progress line as it is (no rich markup or highlighting)."""
    console.print(line, markup=False, highlight=False)


def say(line: str) -> None:
    console.print(line, markup=False, highlight=False)


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set search.batch_size=8 (repeatable)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write report.html")


def add_budget(p: argparse.ArgumentParser) -> None:
    """The budget flags of a search verb (each the config key ``budget.<name>``). A budget
    you set is the only one; with none, a run stops after 1000 evaluations."""
    group = p.add_argument_group("budget (set one and the others are off)")
    group.add_argument("--max-evaluations", type=int, help="candidates evaluated, seeds included")
    group.add_argument("--max-lm-calls", type=int, help="LM generate calls (one per batch)")
    group.add_argument("--max-seconds", type=float, help="wall time, all sessions together")
    group.add_argument("--target-score", type=float, help="also stop once the best reaches it")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions' line breaks and shows each option's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS, [])
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` with `HelpFormatter` (for every subcommand)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


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
