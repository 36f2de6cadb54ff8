"""The self-improvement loop on programming puzzles (Haluptzok et al. 2022, arXiv
2207.14502): generate -> verify -> deduplicate -> fine-tune -> evaluate on held-out
puzzles -> the next iteration uses the new model.

Two arms at the same generation budget (completions per iteration):

- ``qd``: a quality-diversity search (`PuzzlesDomain`: MAP-Elites over answer type and
  puzzle size, fitness = learnability for the current model); the archive's elites are
  the training data.
- ``naive``: sample puzzles from few-shot prompts of seed puzzles, keep those whose
  solution verifies, deduplicate exactly; no archive, no vacuity check.

Every step's result is written to ``improve.json`` as soon as it is done; running again
with the same output folder skips finished steps. Held-out evaluations keep each puzzle's
pass@k, so that each arm's figure over the base model's comes with a bootstrap 95%
interval over the puzzles (``effects`` in the record; `loop_effects`).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openended.apps.training.finetune import FinetuneSettings, finetune
from openended.apps.training.loop_effects import Effect, held_out_effects
from openended.apps.training.loop_record import read_loop_record, write_loop_record
from openended.apps.training.puzzle_data import (
    distinct_sources,
    examples_from_sources,
    sources_from_run,
)
from openended.domains.puzzles.domain import (
    PUZZLE_STOPS,
    PuzzlesConfig,
    PuzzlesDomain,
    seed_genomes,
)
from openended.domains.puzzles.p3 import Puzzle, answer_type_bin, load_puzzles, save_puzzles
from openended.domains.puzzles.p3 import split_by_family as split_puzzles
from openended.domains.puzzles.puzzle_source import PuzzleParseError, PuzzleSource, parse_puzzle
from openended.domains.puzzles.solve import SolveReport, report_figures, solve_puzzles
from openended.domains.puzzles.verify import PuzzleVerifier
from openended.errors import UserError
from openended.lm.base import GenerationRequest, LanguageModel
from openended.lm.embedded import resolve_model
from openended.run_dir import RunDir

ARMS = ("qd", "naive")


class ImproveError(UserError, ValueError):
    """The loop cannot continue as asked (e.g. an output folder made with other settings)."""


@dataclass
class ImproveSettings:
    """What the loop does. `generate_calls` x `batch_size` completions per arm and
    iteration generate puzzles; pass@k is measured on `eval_puzzles` held-out puzzles."""

    puzzles: Path
    out_dir: Path
    model: str = "embedded"
    iterations: int = 1
    arms: tuple[str, ...] = ARMS
    held_out: float = 0.3
    eval_puzzles: int = 40
    samples: int = 10
    ks: tuple[int, ...] = (1, 10)
    generate_calls: int = 8
    batch_size: int = 16
    max_seeds: int = 32
    solver_attempts: int = 4
    with_seeds: bool = False
    """Also train on the seed puzzles' reference solutions (both arms)."""
    seed: int = 0
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)


@dataclass
class Step:
    """One finished step of one arm."""

    arm: str
    iteration: int
    model: str
    generated: int = 0
    verified: int = 0
    training_examples: int = 0
    diversity: dict[str, float] = field(default_factory=dict)
    pass_at: dict[str, float] = field(default_factory=dict)
    per_puzzle: dict[str, list[float]] = field(default_factory=dict)
    """Each held-out puzzle's pass@k, in the order of the evaluation set."""
    seconds: dict[str, float] = field(default_factory=dict)


def _local_model(model: str) -> LanguageModel:
    """The embedded model or a model folder, on the configured default backend."""
    from openended.config import ModelConfig
    from openended.lm.factory import build_language_model

    name = model if model == "embedded" else str(resolve_model(model))
    return build_language_model(ModelConfig(name=name))


class ImproveLoop:
    """Runs the loop, writing ``improve.json`` after every step."""

    def __init__(self, settings: ImproveSettings, *, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.log = log
        self.out = Path(settings.out_dir)
        self.record_path = self.out / "improve.json"
        puzzles = load_puzzles(settings.puzzles)  # a bad input fails before anything is made
        self.out.mkdir(parents=True, exist_ok=True)
        self.train, held_out = split_puzzles(
            puzzles, held_out=settings.held_out, seed=settings.seed
        )
        self.eval_set = held_out[: settings.eval_puzzles]
        self.steps: list[Step] = self._load_steps()
        self.seeds_file = self.out / "seeds.json"
        save_puzzles(self.train, self.seeds_file)  # the loop never sees held-out families

    # -- bookkeeping ------------------------------------------------------------------------

    CHECKED = (
        *("puzzles", "model", "held_out", "eval_puzzles", "samples", "seed", "generate_calls"),
        *("batch_size", "max_seeds", "solver_attempts", "with_seeds", "eval_set"),
    )
    """Settings a rerun must share with the record (more iterations or arms may follow)."""

    def _load_steps(self) -> list[Step]:
        current = self._settings_json()
        data = read_loop_record(self.record_path, current, self.CHECKED, ImproveError)
        return [Step(**s) for s in data.get("steps", [])]

    def _settings_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(asdict(self.settings), default=str))
        data["eval_set"] = [p.name for p in self.eval_set]
        return data

    def _save(self) -> None:
        write_loop_record(
            self.record_path,
            self._settings_json(),
            steps=[asdict(s) for s in self.steps],
            effects=[e.as_json() for e in self.effects()],
        )

    def effects(self) -> list[Effect]:
        """Each arm's held-out pass@k over the base model's (paired over puzzles)."""
        base = self._done("base", 0)
        if base is None:
            return []
        return [
            effect
            for step in self.steps
            if step.arm != "base"
            for effect in held_out_effects(
                step.arm, step.iteration, [(step.per_puzzle, base.per_puzzle)]
            )
        ]

    def _done(self, arm: str, iteration: int) -> Step | None:
        return next((s for s in self.steps if s.arm == arm and s.iteration == iteration), None)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> list[Step]:
        s = self.settings
        base = self._done("base", 0)
        if base is None:
            self.log(f"evaluating the base model on {len(self.eval_set)} held-out puzzles")
            start = time.perf_counter()
            base = Step("base", 0, s.model)
            base.pass_at, base.per_puzzle = self._evaluate(s.model)
            base.seconds["evaluate"] = round(time.perf_counter() - start, 1)
            self._record(base)
        for arm in s.arms:
            model = s.model
            for iteration in range(1, s.iterations + 1):
                done = self._done(arm, iteration)
                if done is None:
                    done = self._iteration(arm, iteration, model)
                    self._record(done)
                model = done.model
        self.plot()
        return self.steps

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        self._save()
        self.log(
            f"[{step.arm} {step.iteration}] verified {step.verified}/{step.generated}, "
            f"trained on {step.training_examples}, "
            + ", ".join(f"{k} {v:.3f}" for k, v in step.pass_at.items())
            + f"  ({', '.join(f'{k} {v:.0f}s' for k, v in step.seconds.items())})"
        )

    def _iteration(self, arm: str, iteration: int, model: str) -> Step:
        s = self.settings
        folder = self.out / arm / f"iter{iteration}"
        step = Step(arm, iteration, model)
        start = time.perf_counter()
        if arm == "qd":
            sources, generated = self._generate_qd(folder, model, iteration)
        elif arm == "naive":
            sources, generated = self._generate_naive(model, iteration)
        else:
            raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
        step.seconds["generate"] = round(time.perf_counter() - start, 1)
        step.generated, step.verified = generated, len(sources)
        step.diversity = diversity(sources)
        training = list(sources)
        if s.with_seeds:
            training += self._seed_sources()
        examples = examples_from_sources(training)
        (folder).mkdir(parents=True, exist_ok=True)
        with (folder / "training_data.jsonl").open("w") as f:
            for e in examples:
                f.write(json.dumps({"prompt": e.prompt, "completion": e.completion}) + "\n")
        step.training_examples = len(examples)
        if examples:
            start = time.perf_counter()
            self.log(f"[{arm} {iteration}] fine-tuning on {len(examples)} examples")
            result = finetune(
                resolve_model(model),
                examples,
                folder / "model",
                s.finetune,
                progress=lambda line: self.log(f"[{arm} {iteration}] {line}"),
            )
            step.model = str(result.model_dir)
            step.seconds["finetune"] = round(time.perf_counter() - start, 1)
        else:
            self.log(f"[{arm} {iteration}] no verified data: the model is not changed")
        earlier = next((x for x in self.steps if x.model == step.model and x.pass_at), None)
        if earlier is not None:  # the model did not change: its pass@k is known
            step.pass_at, step.per_puzzle = dict(earlier.pass_at), dict(earlier.per_puzzle)
            return step
        start = time.perf_counter()
        step.pass_at, step.per_puzzle = self._evaluate(step.model)
        step.seconds["evaluate"] = round(time.perf_counter() - start, 1)
        return step

    # -- generation -------------------------------------------------------------------------

    def _generate_qd(
        self, folder: Path, model: str, iteration: int
    ) -> tuple[list[PuzzleSource], int]:
        from openended import api
        from openended.apps.progress import describe

        s = self.settings
        run_dir = folder / "run"
        config = {
            "seed": s.seed + iteration,
            "model": {"name": model},
            "search": {"batch_size": s.batch_size},
            "budget": {"max_lm_calls": s.generate_calls, "max_seconds": 0},
            "domain": {
                "name": "puzzles",
                "seeds": str(self.seeds_file),
                "max_seeds": s.max_seeds,
                "split_seed": s.seed,
                "solver_attempts": s.solver_attempts,
            },
        }

        def on_batch(metrics: Any) -> None:
            self.log(f"[qd {iteration}] {describe(metrics)}")

        if RunDir(run_dir).state != "free":
            api.resume(run_dir, on_batch=on_batch)
        else:
            api.run(config, run_dir=run_dir, on_batch=on_batch)
        seeds = {src.genome for src in self._seed_sources()}
        sources = [x for x in sources_from_run(run_dir, select="elites") if x.genome not in seeds]
        new = [x for x in sources_from_run(run_dir, select="valid") if x.genome not in seeds]
        self.log(f"[qd {iteration}] {len(new)} new verified puzzles, {len(sources)} new elites")
        return sources, s.generate_calls * s.batch_size

    def _generate_naive(self, model: str, iteration: int) -> tuple[list[PuzzleSource], int]:
        from openended.operators import load_template

        s = self.settings
        domain = PuzzlesDomain(self._domain_config(solver_attempts=0))
        try:
            template = load_template("lmx", override=None, domain_dir=domain.prompt_dir)
            seeds = [_Parent(g) for g in domain.seeds()]
            rng = random.Random(s.seed * 1000 + iteration)
            lm = _local_model(model)
            completions: list[str] = []
            for _ in range(s.generate_calls):
                requests = [
                    GenerationRequest(
                        prompt=template.render(
                            parents=rng.sample(seeds, min(4, len(seeds))), domain={}
                        ),
                        max_tokens=192,
                        temperature=0.9,
                        stop=PUZZLE_STOPS,
                        seed=rng.randrange(2**62),
                    )
                    for _ in range(s.batch_size)
                ]
                results = asyncio.run(lm.generate(requests))
                completions += [r.generations[0].text for r in results]
                self.log(f"[naive {iteration}] generated {len(completions)}")
            sources = asyncio.run(_verified(domain.verifier, completions))
        finally:
            domain.close()
        return distinct_sources(sources), len(completions)

    # -- evaluation -------------------------------------------------------------------------

    def _evaluate(self, model: str) -> tuple[dict[str, float], dict[str, list[float]]]:
        s = self.settings
        lm = _local_model(model)
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            self.log(f"  held-out: {done}/{total} puzzles ({time.perf_counter() - start:.0f}s)")

        async def go() -> Any:
            with PuzzleVerifier() as verifier:
                return await solve_puzzles(
                    lm, self.eval_set, verifier, samples=s.samples, seed=s.seed, progress=progress
                )

        report: SolveReport = asyncio.run(go())
        return report_figures(report, self.eval_set, s.ks)

    def _domain_config(self, *, solver_attempts: int) -> PuzzlesConfig:
        s = self.settings
        return PuzzlesConfig(
            seeds=self.seeds_file,
            max_seeds=s.max_seeds,
            split_seed=s.seed,
            solver_attempts=solver_attempts,
        )

    def _seed_sources(self) -> list[PuzzleSource]:
        return [parse_puzzle(g) for g in seed_genomes(self._domain_config(solver_attempts=0))]

    # -- report -----------------------------------------------------------------------------

    def plot(self) -> Path:
        """``improve.png``: held-out pass@k and training-data diversity per iteration."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        base = self._done("base", 0)
        for arm in self.settings.arms:
            steps = sorted((x for x in self.steps if x.arm == arm), key=lambda x: x.iteration)
            if base is not None:
                steps = [base, *steps]
            for k in self.settings.ks:
                key = f"pass@{k}"
                points = [(x.iteration, x.pass_at[key]) for x in steps if key in x.pass_at]
                if points:
                    axes[0].plot(*zip(*points, strict=True), marker="o", label=f"{arm} {key}")
            cells = [(x.iteration, x.diversity.get("cells", 0)) for x in steps if x.arm == arm]
            if cells:
                axes[1].plot(*zip(*cells, strict=True), marker="o", label=arm)
        axes[0].set(xlabel="iteration", ylabel="held-out pass@k", title="held-out puzzles")
        axes[1].set(
            xlabel="iteration",
            ylabel="grid cells covered by training data",
            title="generated-data diversity",
        )
        for ax in axes:
            ax.legend()
        fig.tight_layout()
        path = self.out / "improve.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


@dataclass(frozen=True)
class _Parent:
    genome: str


async def _verified(verifier: PuzzleVerifier, completions: Sequence[str]) -> list[PuzzleSource]:
    parsed = []
    for text in completions:
        try:
            parsed.append(parse_puzzle(text))
        except PuzzleParseError:
            continue
    verdicts = await verifier.verify_many([(p.sat, p.ans_type, p.sol) for p in parsed])
    return [p for p, v in zip(parsed, verdicts, strict=True) if v.solved]


def diversity(
    sources: Sequence[PuzzleSource], *, size_bins: int = 10, max_size: int = 120
) -> dict[str, float]:
    """Diversity of a set of puzzles: distinct puzzles, answer types, cells of the
    (answer type x sat size) grid covered, and distinct-3 (distinct token trigrams over
    all trigrams) of the sat sources."""
    import ast

    cells = set()
    trigrams: list[tuple[str, ...]] = []
    for src in sources:
        size = sum(1 for _ in ast.walk(ast.parse(src.sat)))
        cells.add((answer_type_bin(src.ans_type), min(size * size_bins // max_size, size_bins - 1)))
        tokens = src.sat.split()
        trigrams += [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    return {
        "puzzles": float(len(sources)),
        "answer_types": float(len({answer_type_bin(s.ans_type) for s in sources})),
        "cells": float(len(cells)),
        "distinct_3": round(len(set(trigrams)) / len(trigrams), 4) if trigrams else 0.0,
    }


__all__ = ["ARMS", "ImproveError", "ImproveLoop", "ImproveSettings", "Puzzle", "Step", "diversity"]
