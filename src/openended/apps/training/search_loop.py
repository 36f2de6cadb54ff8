"""The search teaches its own mutation model: explore -> verify -> fine-tune -> repeat, for
any domain (ELM, Lehman et al. 2022, arXiv 2206.08896, fine-tuned its diff model on the
search's own successful diffs; expert iteration / STaR, Zelikman et al. 2022, arXiv
2203.14465, on verified solutions).

Iteration *i* of the ``tuned`` arm searches with model *M_i* for a fixed number of
completions, then fine-tunes *M_{i+1}* (from the base model) on the verified pairs of all
its runs so far (`openended.apps.training.pairs`). The ``control`` arm spends the same
completions with the base model and the same seeds, so that any difference is the
training's. *M_1* is the base model, so both arms share iteration 1's search.

With ``continual`` the model is trained *during* one search rather than between searches
(EvoTune, Surina et al. 2025, arXiv 2504.05108, fine-tunes its model every few hundred
samples while the program database goes on): iteration *i* continues the arm's search of
iteration *i - 1* (a fork of it, with *M_i* and the budget raised by `completions`), and
its figures count only the children it added; *M_{i+1}* learns from the tuned arm's whole
search so far.

Every finished step (a search, a fine-tune) is written to ``loop.json`` at once; running
again with the same output folder skips finished steps and resumes an interrupted search
from its committed batches. Each search keeps every child's outcome (valid, beat its best
parent), so that the tuned arm's rates over the control's come with a bootstrap 95%
interval over the children (`loop_effects`; ``effects`` in the record, ``plots/effects.png``);
`run_search_seeds` runs the loop with several seeds and pools the children over them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from openended.apps.training.finetune import (
    FINETUNE_INFO,
    Example,
    FinetuneResult,
    FinetuneSettings,
    Preference,
    finetune,
)
from openended.apps.training.loop_effects import (
    Effect,
    plot_effects,
    ratio_effect,
    write_pooled_effects,
)
from openended.apps.training.loop_record import read_loop_record, write_loop_record
from openended.apps.training.menu_labels import label_menus, labels_json, menu_examples
from openended.apps.training.pairs import (
    Selection,
    select_improvement_preferences,
    select_pairs,
    select_preferences,
    write_pairs,
    write_preferences,
)
from openended.config import Config, load_config
from openended.errors import UserError
from openended.lm.base import LanguageModel
from openended.run_dir import RunDir
from openended.store.run_store import RunStore, beats_its_parent, valid_fitness

ARMS = ("tuned", "control")
METRICS = (
    "valid_rate",
    "duplicate_rate",
    "improved_rate",
    "best_fitness",
    "qd_score",
    "coverage",
    "tokens",
    "seconds",
)
"""Per search: valid children / children; near-copies of a program already in the run
(not evaluated again) / children; children that beat their best parent / children; the
best fitness; QD-score and coverage of the archive; LM tokens; wall time."""


LoopSelection = Selection | Literal["labelled"]
"""What trains the next model: the children `select_pairs` keeps (`Selection`), or
``labelled``: every option of the tuned arm's menus evaluated (`menu_labels`), each menu
answered with its best option's letter in several orders (evaluator calls, no LM calls)."""
LABEL_ORDERS = 4
"""Orders each labelled menu is shown in (its own, then random permutations)."""

Trainer = Callable[..., FinetuneResult]
"""`finetune`'s signature: (base model folder, examples, out folder, settings, progress=)."""


class LoopError(UserError, ValueError):
    """The loop cannot go on as asked (e.g. an output folder made with other settings)."""


@dataclass
class LoopSettings:
    """What the loop does: `iterations` rounds of `completions` per arm."""

    config: Path | None
    """The run's TOML (any domain); None: the default search."""
    out_dir: Path
    overrides: tuple[str, ...] = ()
    iterations: int = 2
    completions: int = 64
    select: LoopSelection = "improved"
    max_per_parent: int = 4
    min_pairs: int = 8
    continual: bool = False
    """Train during one search (each iteration continues the last) instead of between
    searches that each start from the seeds."""
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)


@dataclass
class SearchStep:
    """One finished search of one arm."""

    arm: str
    iteration: int
    model: str
    run_dir: str
    completions: int
    """Completions the model wrote (each one child, valid or not)."""
    valid_children: int
    metrics: dict[str, float]
    items: dict[str, list[float]] = field(default_factory=dict)
    """Each child's outcome (1 or 0), in the run's order: ``valid_rate`` (it is valid),
    ``improved_rate`` (it beat its best parent)."""


@dataclass
class TrainStep:
    """One fine-tune of the tuned arm (or why there was none)."""

    iteration: int
    model: str
    pairs: int
    seconds: float
    note: str = ""
    evaluations: int = 0
    """Evaluator calls spent on the training data (``labelled``: the menus' options)."""


Step = TypeVar("Step", SearchStep, TrainStep)


class SearchImproveLoop:
    """Runs the loop (see the module docstring), writing ``loop.json`` after every step."""

    def __init__(
        self,
        settings: LoopSettings,
        *,
        log: Callable[[str], None] = print,
        language_model: Callable[[str], LanguageModel] | None = None,
        trainer: Trainer = finetune,
    ) -> None:
        """`language_model` makes the model of a name (default: the run's configured
        backend); `trainer` fine-tunes (default: `finetune`). Both are for tests."""
        if settings.iterations < 1 or settings.completions < 1:
            raise LoopError("--iterations and --completions must be at least 1")
        if settings.select == "labelled" and settings.finetune.objective != "sft":
            raise LoopError("--select labelled trains with --objective sft (letters as answers)")
        self.settings = settings
        self.log = log
        self.language_model = language_model
        self.trainer = trainer
        self.base_config = load_config(settings.config, settings.overrides)  # fails early
        if self.base_config.model.is_remote and language_model is None:
            raise LoopError(
                f"model {self.base_config.model.name}: the loop fine-tunes a local model "
                "(embedded or a model folder), not a server"
            )
        self.out = Path(settings.out_dir)
        self.record_path = self.out / "loop.json"
        self.searches: list[SearchStep] = []
        self.trainings: list[TrainStep] = []
        self._load()

    # -- bookkeeping ------------------------------------------------------------------------

    def _settings_json(self) -> dict[str, Any]:
        data = asdict(self.settings)
        data["resolved_config"] = self.base_config.model_dump(mode="json")
        return json.loads(json.dumps(data, default=str))

    def _load(self) -> None:
        keys = (
            *("resolved_config", "completions", "select", "max_per_parent", "finetune"),
            "continual",
        )
        data = read_loop_record(self.record_path, self._settings_json(), keys, LoopError)
        self.searches = [SearchStep(**s) for s in data.get("searches", [])]
        self.trainings = [TrainStep(**t) for t in data.get("trainings", [])]

    def _save(self) -> None:
        write_loop_record(
            self.record_path,
            self._settings_json(),
            searches=[asdict(s) for s in self.searches],
            trainings=[asdict(t) for t in self.trainings],
            effects=[e.as_json() for e in self.effects()],
        )

    def effects(self) -> list[Effect]:
        """The tuned arm's rates over the control's (children resampled per arm)."""
        return search_effects([self])

    def search_step(self, arm: str, iteration: int) -> SearchStep | None:
        return next((s for s in self.searches if s.arm == arm and s.iteration == iteration), None)

    def train_step(self, iteration: int) -> TrainStep | None:
        return next((t for t in self.trainings if t.iteration == iteration), None)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> list[SearchStep]:
        base = self.base_config.model.name
        model = base
        for iteration in range(1, self.settings.iterations + 1):
            tuned = self.search_step("tuned", iteration)
            if tuned is None:
                tuned = self._search("tuned", iteration, model)
            if self.search_step("control", iteration) is None:
                if model == base:  # the same model and seed: the same search
                    self._record(dataclasses.replace(tuned, arm="control"))
                else:
                    self._search("control", iteration, base)
            if iteration < self.settings.iterations:
                trained = self.train_step(iteration) or self._train(iteration, model)
                model = trained.model
        self.plot()
        return self.searches

    def _record(self, step: Step) -> Step:
        if isinstance(step, SearchStep):
            self.searches.append(step)
            m = step.metrics
            self.log(
                f"[{step.arm} {step.iteration}] {step.completions} completions: valid "
                f"{m['valid_rate']:.1%}, beat their parent {m['improved_rate']:.1%}, best "
                f"{m['best_fitness']:.4g}, QD {m['qd_score']:.4g}, coverage {m['coverage']:.1%}"
                f" ({m['seconds']:.0f}s)"
            )
        else:
            self.trainings.append(step)
            self.log(f"[train {step.iteration}] {step.pairs} pairs -> {step.model} {step.note}")
        self._save()
        return step

    def _search(self, arm: str, iteration: int, model: str) -> SearchStep:
        from openended import api
        from openended.apps.progress import describe

        run_dir = self.out / arm / f"iter{iteration}"
        config = self._run_config(iteration, model)
        start = time.perf_counter()

        def on_batch(metrics: Any) -> None:
            self.log(f"[{arm} {iteration}] {describe(metrics)}")

        lm = self.language_model(model) if self.language_model is not None else None
        previous = self.search_step(arm, iteration - 1) if self.settings.continual else None
        after_batch = -1
        if previous is not None:
            source = self.out / previous.run_dir
            after_batch = last_batch(source)
        if RunDir(run_dir).state != "free":
            self.log(f"[{arm} {iteration}] resuming {run_dir}")
            api.resume(run_dir, on_batch=on_batch, lm=lm)
        elif previous is not None:  # continue the arm's search with this model
            overrides = [
                f"model.name={json.dumps(model)}",
                f"budget.max_lm_calls={config.budget.max_lm_calls * iteration}",
            ]
            api.resume(source, fork=run_dir, overrides=overrides, on_batch=on_batch, lm=lm)
        else:
            api.run(config, run_dir=run_dir, on_batch=on_batch, lm=lm)
        step = SearchStep(
            arm=arm,
            iteration=iteration,
            model=model,
            run_dir=str(run_dir.relative_to(self.out)),
            **search_metrics(run_dir, after_batch=after_batch),
        )
        step.metrics["seconds"] = max(step.metrics["seconds"], time.perf_counter() - start)
        self._record(step)
        return step

    def _run_config(self, iteration: int, model: str) -> Config:
        data = self.base_config.model_dump(mode="python")
        batch = int(data["search"]["batch_size"])
        data["seed"] = int(data["seed"]) + iteration
        data["model"]["name"] = model
        data["budget"] = {"max_lm_calls": math.ceil(self.settings.completions / batch)}
        return load_config(data)

    def _train(self, iteration: int, model: str) -> TrainStep:
        """M_{i+1}: the base model fine-tuned on the pairs of the tuned arm's runs 1..i
        (prompt -> completion pairs; or, with the DPO objective, preference pairs: with
        ``select="improved"`` an improving child over its prompt's others, EvoTune's;
        otherwise a valid child over its prompt's failed ones)."""
        s = self.settings
        folder = self.out / "tuned" / f"model{iteration + 1}"
        examples: list[Example] | list[Preference] = []
        sources: list[str] = []
        evaluations = 0
        for step in self._tuned_runs(iteration):
            if s.select == "labelled":
                labels = label_menus(
                    self.out / step.run_dir,
                    cache=self.out / "tuned" / f"labels{step.iteration}.json",
                    log=lambda line: self.log(f"[train {iteration}] {line}"),
                )
                self.log(f"[train {iteration}] {step.run_dir}: {labels.summary()}")
                (self.out / "tuned" / f"labels{step.iteration}.summary.json").write_text(
                    json.dumps(labels_json(labels), indent=1)
                )
                found_examples = menu_examples(labels, orders=LABEL_ORDERS, seed=iteration)
                examples += found_examples  # type: ignore[arg-type]
                sources += [f"{step.run_dir}:labelled"] * len(found_examples)
                evaluations += labels.evaluations
                continue
            if s.finetune.objective == "dpo":
                chooser = (
                    select_improvement_preferences if s.select == "improved" else select_preferences
                )
                preferred = chooser(
                    self.out / step.run_dir, max_per_prompt=s.max_per_parent, min_pairs=0
                )
                examples += preferred.preferences  # type: ignore[arg-type]
                continue
            found = select_pairs(
                self.out / step.run_dir,
                select=s.select,
                max_per_parent=s.max_per_parent,
                min_pairs=0,
            )
            examples += found.examples  # type: ignore[arg-type]
            sources += [f"{step.run_dir}:{i}" for i in found.ids]
        if len(examples) < s.min_pairs:
            note = f"(fewer than {s.min_pairs} pairs: the model is not changed)"
            return self._record(TrainStep(iteration, model, len(examples), 0.0, note, evaluations))
        start = time.perf_counter()
        if not (folder / FINETUNE_INFO).is_file():  # a finished fine-tune is kept
            self.log(f"[train {iteration}] fine-tuning on {len(examples)} pairs")
            self.trainer(
                self.base_config.model.name,
                examples,
                folder,
                s.finetune,
                progress=lambda line: self.log(f"[train {iteration}] {line}"),
            )
            if s.finetune.objective == "dpo":
                write_preferences(folder / "training_preferences.jsonl", examples)  # type: ignore[arg-type]
            else:
                write_pairs(folder / "training_pairs.jsonl", examples, sources)  # type: ignore[arg-type]
        seconds = round(time.perf_counter() - start, 1)
        return self._record(
            TrainStep(iteration, str(folder), len(examples), seconds, evaluations=evaluations)
        )

    def _tuned_runs(self, iteration: int) -> list[SearchStep]:
        """The tuned arm's searches up to `iteration` (continual: the last holds all)."""
        runs = [s for s in self.searches if s.arm == "tuned" and s.iteration <= iteration]
        return runs[-1:] if self.settings.continual else runs

    # -- report -----------------------------------------------------------------------------

    def plot(self) -> list[Path]:
        """One PNG per metric (``plots/<metric>.png``), both arms over the iterations."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = self.out / "plots"
        folder.mkdir(parents=True, exist_ok=True)
        paths = [plot_effects(self.effects(), folder / "effects.png", "tuned over control")]
        for metric in METRICS:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for arm in ARMS:
                points = sorted(
                    (s.iteration, s.metrics.get(metric, math.nan))
                    for s in self.searches
                    if s.arm == arm
                )
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=arm)
            ax.set(xlabel="iteration", ylabel=metric.replace("_", " "), title=metric)
            ax.set_xticks(range(1, self.settings.iterations + 1))
            ax.legend()
            fig.tight_layout()
            path = folder / f"{metric}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths.append(path)
        return paths


def last_batch(run_dir: Path) -> int:
    """The last committed batch of a run (-1: none)."""
    with RunStore(run_dir) as store:
        return max((r.batch for r in store.candidates()), default=-1)


def search_metrics(run_dir: Path, *, after_batch: int = -1) -> dict[str, Any]:
    """What one search did: its completions, valid children, and the `METRICS`; with
    `after_batch`, of the children of later batches only (a continued search's own)."""
    with RunStore(run_dir) as store:
        records = list(store.candidates())
        last = store.last_metrics()
    fitness = valid_fitness(records)
    children = [r for r in records if r.parents and r.batch > after_batch]
    valid = [float(r.status == "valid" and r.fitness is not None) for r in children]
    improved = [float(beats_its_parent(r, fitness)) for r in children]
    count = max(len(children), 1)
    best = last.best_fitness if last is not None else None
    return {
        "completions": len(children),
        "valid_children": int(sum(valid)),
        "items": {"valid_rate": valid, "improved_rate": improved},
        "metrics": {
            "valid_rate": sum(valid) / count,
            "duplicate_rate": sum(r.status == "duplicate" for r in children) / count,
            "improved_rate": sum(improved) / count,
            "best_fitness": float(best) if best is not None else math.nan,
            "qd_score": float(last.qd_score) if last else 0.0,
            "coverage": float(last.coverage) if last else 0.0,
            "tokens": float(last.tokens) if last else 0.0,
            "seconds": float(last.elapsed) if last else 0.0,
        },
    }


EFFECT_METRICS = ("improved_rate", "valid_rate")


def search_effects(loops: Sequence[SearchImproveLoop]) -> list[Effect]:
    """The tuned arm's `EFFECT_METRICS` over the control's at each iteration after the
    first (which both arms share), the children of the loops (one per seed) pooled;
    iterations some loop lacks are left out."""
    effects = []
    iterations = max((s.iteration for loop in loops for s in loop.searches), default=0)
    for iteration in range(2, iterations + 1):
        pairs = [(loop.search_step("tuned", iteration), loop.search_step("control", iteration))
                 for loop in loops]  # fmt: skip
        if not all(t and c and t.items and c.items for t, c in pairs):
            continue
        for metric in EFFECT_METRICS:
            found = ratio_effect(
                metric,
                "tuned",
                "control",
                iteration,
                [t.items[metric] for t, _ in pairs],  # type: ignore[union-attr]
                [c.items[metric] for _, c in pairs],  # type: ignore[union-attr]
                paired=False,
            )
            if found is not None:
                effects.append(found)
    return effects


def run_search_seeds(
    settings: LoopSettings, seeds: Sequence[int], **options: Any
) -> tuple[list[SearchImproveLoop], list[Effect]]:
    """The loop once per seed (the run's ``seed`` set to each; in ``<out_dir>/seed<N>``,
    each resumable), then the effects pooled over the seeds, written to
    ``<out_dir>/effects.json`` and ``effects.png``. `options` go to each loop."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise LoopError(f"--seeds must be distinct and at least one, got {list(seeds)}")
    loops = []
    for seed in seeds:
        loop = SearchImproveLoop(
            dataclasses.replace(
                settings,
                out_dir=Path(settings.out_dir) / f"seed{seed}",
                overrides=(*settings.overrides, f"seed={seed}"),
            ),
            **options,
        )
        loop.run()
        loops.append(loop)
    effects = search_effects(loops)
    write_pooled_effects(Path(settings.out_dir), seeds, effects, "tuned over control")
    return loops, effects
