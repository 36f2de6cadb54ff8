"""Expert iteration on programming puzzles: sample solutions to the training puzzles,
keep those the sandbox verifies, fine-tune on them, repeat (Haluptzok et al. 2022, arXiv
2207.14502: a 125M model fine-tuned on its own verified solutions more than doubled its
held-out pass@k; Anthony et al. 2017 and STaR, Zelikman et al. 2022, for the scheme).

Haluptzok's recipe: verified solutions only, deduplicated, several per puzzle (at most
`max_per_puzzle`, so that easy puzzles do not crowd out the rest). Held-out puzzles come
from whole problem families never sampled for training (`split_by_family`). Each
iteration of the ``tuned`` arm samples with the current model and fine-tunes the next one
from the base model on the solutions of all iterations so far; the ``control`` arm keeps
the base model and trains nothing (its samples would teach nothing, so they are not
drawn): its held-out pass@k, measured with each iteration's seed and the same samples,
shows the spread that no training gives. The ``selfplay`` arm (`self_play`: Haluptzok's
own recipe) spends the same number of sampled completions writing new puzzles with their
solutions instead, keeps those that verify and are not vacuous, and fine-tunes on them.

Every held-out evaluation keeps each puzzle's pass@k, so that each arm's figure over the
base model's comes with a bootstrap 95% interval over the puzzles (`loop_effects`;
``effects`` in the record, ``effects.png``). `run_solve_seeds` runs the loop with several
seeds on the same held-out puzzles (`split_seed`) and pools the effects over them.

Every finished step is written to ``solve_loop.json`` at once; a rerun with the same
output folder skips finished steps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openended.apps.training.finetune import FINETUNE_INFO, Example, FinetuneSettings, finetune
from openended.apps.training.loop_effects import (
    Effect,
    held_out_effects,
    plot_effects,
    write_pooled_effects,
)
from openended.apps.training.loop_record import read_loop_record, write_loop_record
from openended.apps.training.pairs import normalised_genome, write_pairs
from openended.apps.training.puzzle_data import puzzle_example
from openended.apps.training.search_loop import Trainer
from openended.apps.training.self_play import self_play
from openended.domains.puzzles.p3 import Puzzle, load_puzzles, split_by_family
from openended.domains.puzzles.puzzle_source import PuzzleSource
from openended.domains.puzzles.solve import SolveReport, report_figures, solve_puzzles
from openended.domains.puzzles.verify import PuzzleVerifier
from openended.errors import UserError
from openended.lm.base import LanguageModel

ARMS = ("tuned", "control", "selfplay")
"""Expert iteration, the untrained base model, self-play puzzles."""


class SolveLoopError(UserError, ValueError):
    """The loop cannot go on as asked (e.g. an output folder made with other settings)."""


@dataclass
class SolveLoopSettings:
    """`iterations` rounds; each samples `samples` solutions for each of `train_puzzles`
    training puzzles and measures pass@k with `eval_samples` on `eval_puzzles` held-out
    ones. `split_seed` chooses the held-out families and both puzzle samples; `seed`
    the sampling and the fine-tunes, so that seeds share their held-out puzzles."""

    puzzles: Path
    out_dir: Path
    model: str = "embedded"
    iterations: int = 2
    arms: tuple[str, ...] = ("tuned", "control")
    held_out: float = 0.3
    train_puzzles: int = 200
    samples: int = 8
    max_per_puzzle: int = 4
    eval_puzzles: int = 60
    eval_samples: int = 10
    ks: tuple[int, ...] = (1, 10)
    max_tokens: int = 128
    """Per sampled solution (training and held-out alike)."""
    min_pairs: int = 8
    seed: int = 0
    split_seed: int = 0
    self_play_tokens: int = 192
    """Per self-written puzzle (a puzzle and its solution are longer than a solution)."""
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)


@dataclass
class SolveStep:
    """One finished step: an arm's sampling (and training) at one iteration, or the
    base model's held-out evaluation (arm ``base``, iteration 0)."""

    arm: str
    iteration: int
    model: str
    sampled: int = 0
    """Solutions sampled on training puzzles."""
    verified: int = 0
    """Distinct verified solutions found."""
    puzzles_solved: int = 0
    training_pairs: int = 0
    """Pairs the next model was trained on (all iterations so far); 0: not trained."""
    pass_at: dict[str, float] = field(default_factory=dict)
    """Held-out pass@k of the model this step ends with."""
    per_puzzle: dict[str, list[float]] = field(default_factory=dict)
    """Each held-out puzzle's pass@k, in the order of the evaluation set."""
    tokens: int = 0
    """Completion tokens sampled for training data."""
    seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""


class SolveLoop:
    """Runs expert iteration (see the module docstring)."""

    def __init__(
        self,
        settings: SolveLoopSettings,
        *,
        log: Callable[[str], None] = print,
        language_model: Callable[[str], LanguageModel] | None = None,
        trainer: Trainer = finetune,
    ) -> None:
        if settings.iterations < 1:
            raise SolveLoopError("--iterations must be at least 1")
        unknown = sorted(set(settings.arms) - set(ARMS))
        if unknown:
            raise SolveLoopError(f"unknown arm {unknown[0]!r}; choose from {', '.join(ARMS)}")
        self.settings = settings
        self.log = log
        self.language_model = language_model or _local_model
        self.trainer = trainer
        puzzles = load_puzzles(settings.puzzles)  # a bad file fails before anything is made
        train, held_out = split_by_family(
            puzzles, held_out=settings.held_out, seed=settings.split_seed
        )
        # a seeded sample of each side: P3 files run module by module (classic puzzles,
        # the hardest, first), so the first N would not be representative
        shuffle = random.Random(settings.split_seed).shuffle
        shuffle(train)
        shuffle(held_out)
        self.train = train[: settings.train_puzzles]
        self.eval_set = held_out[: settings.eval_puzzles]
        if not self.train or not self.eval_set:
            raise SolveLoopError(
                f"{settings.puzzles}: {len(train)} training and {len(held_out)} held-out puzzles "
                f"with held_out = {settings.held_out}; both must be non-empty"
            )
        self.out = Path(settings.out_dir)
        self.record_path = self.out / "solve_loop.json"
        self.steps: list[SolveStep] = self._load()
        self.solutions: dict[str, dict[str, list[str]]] = {}
        """Verified solution bodies per arm and puzzle, all iterations so far."""
        self.generated: dict[str, Puzzle] = {}
        """The self-play arm's puzzles, by name."""
        self._tokens: dict[tuple[str, int], int] = {}

    # -- bookkeeping ------------------------------------------------------------------------

    def _settings_json(self) -> dict[str, Any]:
        data = json.loads(json.dumps(asdict(self.settings), default=str))
        data.pop("iterations")  # more iterations or arms continue a loop
        data.pop("arms")
        data["eval_set"] = [p.name for p in self.eval_set]
        return data

    def _load(self) -> list[SolveStep]:
        current = self._settings_json()
        data = read_loop_record(self.record_path, current, current, SolveLoopError)
        return [SolveStep(**s) for s in data.get("steps", [])]

    def _record(self, step: SolveStep) -> SolveStep:
        self.steps.append(step)
        write_loop_record(
            self.record_path,
            self._settings_json(),
            steps=[asdict(s) for s in self.steps],
            effects=[e.as_json() for e in self.effects()],
        )
        self.log(
            f"[{step.arm} {step.iteration}] verified {step.verified} of {step.sampled} samples "
            f"({step.puzzles_solved} puzzles), trained on {step.training_pairs}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in step.pass_at.items())
        )
        return step

    def step(self, arm: str, iteration: int) -> SolveStep | None:
        return next((s for s in self.steps if s.arm == arm and s.iteration == iteration), None)

    # -- the loop ---------------------------------------------------------------------------

    def base(self) -> SolveStep:
        """The base model's held-out pass@k (measured now unless it was already)."""
        s = self.settings
        done = self.step("base", 0)
        if done is None:
            start = time.perf_counter()
            done = SolveStep("base", 0, s.model)
            done.pass_at, done.per_puzzle = self.evaluate(s.model, s.seed)
            done.seconds["evaluate"] = round(time.perf_counter() - start, 1)
            self._record(done)
        return done

    def run(self) -> list[SolveStep]:
        s = self.settings
        self.base()
        for arm in s.arms:
            model = s.model
            for iteration in range(1, s.iterations + 1):
                done = self.step(arm, iteration)
                if done is None:
                    done = self._record(self._iteration(arm, iteration, model))
                elif arm != "control":  # its data trains the later iterations
                    self._data_of(arm, iteration)
                model = done.model
        plot_effects(self.effects(), self.out / "effects.png", "held-out pass@k over the base")
        return self.steps

    def effects(self) -> list[Effect]:
        """Each arm's held-out pass@k over the base model's (paired over puzzles)."""
        return solve_effects([self])

    def _iteration(self, arm: str, iteration: int, model: str) -> SolveStep:
        s = self.settings
        step = SolveStep(arm, iteration, model)
        if arm != "control":  # (the control arm's samples would train nothing: not drawn)
            start = time.perf_counter()
            found = self._data_of(arm, iteration, sampling_model=model)
            step.seconds["sample"] = round(time.perf_counter() - start, 1)
            step.sampled = len(self.train) * s.samples
            step.verified = sum(len(v) for v in found.values())
            step.puzzles_solved = sum(bool(v) for v in found.values())
            step.tokens = self._tokens.get((arm, iteration), 0)
            examples, names = self.training_pairs(arm)
            folder = self.out / arm / f"model{iteration + 1}"
            if len(examples) < s.min_pairs:
                step.note = f"fewer than {s.min_pairs} verified pairs: the model is not changed"
            else:
                start = time.perf_counter()
                if not (folder / FINETUNE_INFO).is_file():
                    self.log(f"[{arm} {iteration}] fine-tuning on {len(examples)} pairs")
                    self.trainer(
                        s.model,
                        examples,
                        folder,
                        s.finetune,
                        progress=lambda line: self.log(f"[{arm} {iteration}] {line}"),
                    )
                    write_pairs(folder / "training_pairs.jsonl", examples, names)
                step.seconds["finetune"] = round(time.perf_counter() - start, 1)
                step.model, step.training_pairs = str(folder), len(examples)
        start = time.perf_counter()
        step.pass_at, step.per_puzzle = self.evaluate(step.model, s.seed + iteration)
        step.seconds["evaluate"] = round(time.perf_counter() - start, 1)
        return step

    def _data_of(
        self, arm: str, iteration: int, *, sampling_model: str | None = None
    ) -> dict[str, list[str]]:
        """The verified solutions that `arm` found at `iteration` (sampled now with
        `sampling_model`, or read back from the samples file of a finished step), merged
        into the arm's pool: solutions to training puzzles (``tuned``), or self-written
        puzzles with their solutions (``selfplay``)."""
        path = self.out / arm / f"solutions{iteration}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            if "solutions" not in data:  # a record of an earlier version: solutions alone
                data = {"solutions": data}
        else:
            if sampling_model is None:
                raise SolveLoopError(f"{path} is missing: remove {self.record_path} to start over")
            seed = self.settings.seed * 1000 + iteration
            if arm == "selfplay":
                data = self._self_play(sampling_model, iteration, seed)
            else:
                report = self._sample(sampling_model, seed)
                data = {
                    "tokens": report.completion_tokens,
                    "solutions": {r.name: list(r.solutions) for r in report.results},
                }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=1))
        for name, source in data.get("puzzles", {}).items():
            self.generated[name] = PuzzleSource(**source).as_puzzle(name)
        self._tokens[(arm, iteration)] = int(data.get("tokens", 0))
        found: dict[str, list[str]] = data["solutions"]
        pool = self.solutions.setdefault(arm, {})
        for name, bodies in found.items():
            pool.setdefault(name, [])
            pool[name] += [b for b in bodies if b not in pool[name]]
        return found

    def _self_play(self, model: str, iteration: int, seed: int) -> dict[str, Any]:
        """As many completions as expert iteration samples, each a new puzzle with its
        solution; the verified, non-vacuous, new ones (`self_play`)."""
        s = self.settings
        lm = self.language_model(model)
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            seconds = time.perf_counter() - start
            self.log(f"  self-play: {done}/{total} puzzles written ({seconds:.0f}s)")

        async def go() -> Any:
            with PuzzleVerifier() as verifier:
                return await self_play(
                    lm,
                    self.train,
                    verifier,
                    completions=len(self.train) * s.samples,
                    seed=seed,
                    max_tokens=s.self_play_tokens,
                    progress=progress,
                )

        result = asyncio.run(go())
        self.log("  self-play: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
        names = [f"selfplay{iteration}:{i}" for i in range(len(result.kept))]
        return {
            "counts": result.counts,
            "tokens": result.tokens,
            "puzzles": {n: asdict(p) for n, p in zip(names, result.kept, strict=True)},
            "solutions": {
                n: [p.as_puzzle(n).sol_bodies[0]] for n, p in zip(names, result.kept, strict=True)
            },
        }

    def training_pairs(self, arm: str) -> tuple[list[Example], list[str]]:
        """Solve prompt -> verified body pairs from the arm's pool: deduplicated by
        normalised body, at most `max_per_puzzle` per puzzle."""
        by_name = {p.name: p for p in self.train} | self.generated
        examples, names = [], []
        for name, bodies in sorted(self.solutions.get(arm, {}).items()):
            seen: set[str] = set()
            for body in bodies:
                key = normalised_genome(body.strip())
                if key in seen or len(seen) >= self.settings.max_per_puzzle:
                    continue
                seen.add(key)
                examples.append(puzzle_example(by_name[name], body))
                names.append(name)
        return examples, names

    def _sample(self, model: str, seed: int) -> SolveReport:
        return self._solve(model, self.train, self.settings.samples, seed, "training")

    def evaluate(self, model: str, seed: int) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Held-out pass@k of `model` (a name or folder), sampled with `seed`: the mean,
        and each puzzle's in the order of the evaluation set."""
        report = self._solve(model, self.eval_set, self.settings.eval_samples, seed, "held-out")
        return report_figures(report, self.eval_set, self.settings.ks)

    def _solve(
        self, model: str, puzzles: Sequence[Puzzle], samples: int, seed: int, what: str
    ) -> SolveReport:
        lm = self.language_model(model)
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            self.log(f"  {what}: {done}/{total} puzzles ({time.perf_counter() - start:.0f}s)")

        async def go() -> SolveReport:
            with PuzzleVerifier() as verifier:
                return await solve_puzzles(
                    lm,
                    puzzles,
                    verifier,
                    samples=samples,
                    seed=seed,
                    max_tokens=self.settings.max_tokens,
                    progress=progress,
                )

        return asyncio.run(go())


def solve_effects(loops: Sequence[SolveLoop]) -> list[Effect]:
    """Each arm's held-out pass@k over the base model's at each iteration, paired over
    puzzles, each puzzle's pass@k averaged over the loops (one per seed, sharing their
    held-out puzzles); steps some loop lacks are left out."""
    effects = []
    names = {tuple(p.name for p in loop.eval_set) for loop in loops}
    if len(names) > 1:
        raise SolveLoopError("the loops hold out different puzzles: give them one split_seed")
    iterations = max((s.iteration for loop in loops for s in loop.steps), default=0)
    for arm in ARMS:
        for iteration in range(1, iterations + 1):
            pairs = [(loop.step(arm, iteration), loop.step("base", 0)) for loop in loops]
            if all(step and base for step, base in pairs):
                figures = [(step.per_puzzle, base.per_puzzle) for step, base in pairs]  # type: ignore[union-attr]
                effects += held_out_effects(arm, iteration, figures)
    return effects


def run_solve_seeds(
    settings: SolveLoopSettings, seeds: Sequence[int], **options: Any
) -> tuple[list[SolveLoop], list[Effect]]:
    """The loop once per seed (in ``<out_dir>/seed<N>``, each resumable), then the effects
    pooled over the seeds, written to ``<out_dir>/effects.json`` and ``effects.png``.
    `options` go to each `SolveLoop`."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise SolveLoopError(f"--seeds must be distinct and at least one, got {list(seeds)}")
    loops = []
    for seed in seeds:
        folder = Path(settings.out_dir) / f"seed{seed}"
        loop = SolveLoop(dataclasses.replace(settings, seed=seed, out_dir=folder), **options)
        loop.run()
        loops.append(loop)
    effects = solve_effects(loops)
    write_pooled_effects(Path(settings.out_dir), seeds, effects, "held-out pass@k over the base")
    return loops, effects


def _local_model(model: str) -> LanguageModel:
    """The embedded model or a model folder, on the default backend."""
    from openended.config import ModelConfig
    from openended.lm.factory import build_language_model

    return build_language_model(ModelConfig(name=model))
