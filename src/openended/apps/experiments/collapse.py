"""Model collapse under self-training: generation g + 1 is trained on what generation g
sampled, under four data policies (Shumailov et al. 2024, Nature 631:755; Gerstgrasser et
al. 2024, arXiv 2404.01413):

- ``replace``: only the last generation's samples (the "model eats its own tail" loop);
- ``accumulate``: the real data plus every generation's samples so far;
- ``accumulate-verify``: the real data plus the samples that pass the verifier;
- ``qd-curated``: the real data plus the elites of a MAP-Elites archive (one per
  descriptor cell) of the verified samples (Mouret & Clune 2015, arXiv 1504.04909).

Generation 0 is trained on the real data. Every (seed, policy, generation) becomes one row
of ``results.jsonl`` as soon as it is measured; a rerun in the same folder resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openended.apps.experiments.equations import EquationWorld
from openended.apps.experiments.metrics import mean_pass_at_k, rare_ngrams, tail_survival
from openended.apps.experiments.models import SelfTrainingModel
from openended.apps.experiments.results import ResultsFile
from openended.archive import Archive
from openended.domains.base import Axis
from openended.embeddings import distinct_n
from openended.textfiles import write_atomically

POLICIES = ("replace", "accumulate", "accumulate-verify", "qd-curated")
MODELS = ("ngram", "embedded")


@dataclass(frozen=True)
class CollapseSettings:
    """One collapse experiment.

    Args:
        model: "ngram" (seconds) or "embedded" (the 135M model; minutes per generation).
        policies: which of `POLICIES`.
        generations: generations after generation 0.
        seeds: independent repetitions (data, sampling, training).
        real_lines: real training lines; every generation samples as many.
        heldout_lines: real lines for the held-out perplexity.
        prompts: held-out "a + b =" prompts for pass@k.
        samples_per_prompt: completions per prompt (n of the pass@k estimator).
        k: the k of pass@k (pass@1 is reported too).
        embedding_sample: lines embedded for the dispersion (0: not measured).
        world_size, zipf: the equation world (`EquationWorld`).
        order: the n-gram order.
    """

    model: str = "ngram"
    policies: tuple[str, ...] = POLICIES
    generations: int = 10
    seeds: int = 5
    real_lines: int = 1000
    heldout_lines: int = 1000
    prompts: int = 100
    samples_per_prompt: int = 10
    k: int = 5
    embedding_sample: int = 200
    world_size: int = 30
    zipf: float = 1.1
    order: int = 5

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise ValueError(
                f"policies must be among {', '.join(POLICIES)}, got {', '.join(self.policies)!r}"
            )
        for name in ("generations", "seeds", "real_lines", "heldout_lines", "prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.order < 1:
            raise ValueError(f"order must be >= 1, got {self.order}")
        self.world  # noqa: B018 - the world checks its own settings
        if not 1 <= self.k <= self.samples_per_prompt:
            raise ValueError(
                f"k must be in 1..samples_per_prompt ({self.samples_per_prompt}), got {self.k}"
            )

    @property
    def world(self) -> EquationWorld:
        return EquationWorld(size=self.world_size, zipf=self.zipf)


@dataclass
class RealData:
    """One seed's real data: training lines, held-out lines, pass@k prompts, the tail."""

    train: list[str]
    heldout: list[str]
    prompts: list[tuple[int, int]]
    rare: set[tuple[str, ...]]

    @classmethod
    def draw(cls, settings: CollapseSettings, seed: int) -> RealData:
        world = settings.world
        rng = np.random.default_rng([seed, 0])
        train = world.lines(settings.real_lines, rng)
        heldout = world.lines(settings.heldout_lines, rng)
        pairs: list[tuple[int, int]] = []
        for a, b in world.sample_pairs(50 * settings.prompts, rng):
            if (int(a), int(b)) not in pairs:
                pairs.append((int(a), int(b)))
            if len(pairs) == settings.prompts:
                break
        return cls(train, heldout, pairs, rare_ngrams(train))


class Measure:
    """The metrics of one trained generation (and its samples, the next data)."""

    def __init__(
        self,
        settings: CollapseSettings,
        embed: Callable[[Sequence[str]], np.ndarray] | None,
    ) -> None:
        self.settings = settings
        self.world = settings.world
        self.embed = embed

    def __call__(
        self, model: SelfTrainingModel, real: RealData, samples: list[str], seed: int
    ) -> dict[str, float]:
        s = self.settings
        prompts = [self.world.prompt(a, b) for a, b in real.prompts]
        completions = model.complete(prompts, s.samples_per_prompt, seed)
        correct = [sum(self.world.verify(c) for c in row) for row in completions]
        row = {
            "perplexity": model.perplexity(real.heldout),
            "valid": float(np.mean([self.world.verify(x) for x in samples])),
            "distinct_lines": len(set(samples)) / len(samples),
            "distinct_3": distinct_n(samples, 3),
            "tail_survival": tail_survival(real.rare, samples),
            "pass@1": mean_pass_at_k(correct, s.samples_per_prompt, 1),
            f"pass@{s.k}": mean_pass_at_k(correct, s.samples_per_prompt, s.k),
        }
        if self.embed is not None and s.embedding_sample > 0:
            from openended.embeddings import mean_pairwise_distance

            rng = np.random.default_rng([seed, 1])
            chosen = rng.choice(len(samples), min(s.embedding_sample, len(samples)), replace=False)
            row["dispersion"] = mean_pairwise_distance(self.embed([samples[i] for i in chosen]))
        return row


class DataPolicy:
    """The training data of each generation under one policy."""

    def __init__(self, policy: str, world: EquationWorld, real: list[str]) -> None:
        self.policy = policy
        self.world = world
        self.real = real
        self.synthetic: list[str] = []
        self.archive: Archive | None = None
        if policy == "qd-curated":
            axes = [Axis(name, 0, world.size, world.size) for name in ("a", "b")]
            self.archive = Archive(axes=axes)
        self._next_id = 0

    def add(self, samples: list[str]) -> None:
        """Take one generation's samples."""
        if self.policy == "replace":
            self.synthetic = list(samples)
        elif self.policy == "accumulate":
            self.synthetic += samples
        elif self.policy == "accumulate-verify":
            self.synthetic += [x for x in samples if self.world.verify(x)]
        else:
            assert self.archive is not None
            kept = [(x, self.world.descriptors(x)) for x in samples if self.world.verify(x)]
            kept = [(x, d) for x, d in kept if d is not None]
            if kept:
                ids = list(range(self._next_id, self._next_id + len(kept)))
                self._next_id += len(kept)
                self.archive.add(ids, [x for x, _ in kept], [1.0] * len(kept), [d for _, d in kept])

    def data(self) -> list[str]:
        if self.policy == "replace":
            return self.synthetic
        if self.policy == "qd-curated":
            assert self.archive is not None
            return self.real + [e.genome for e in self.archive.elites()]
        return self.real + self.synthetic


def run_collapse(
    settings: CollapseSettings,
    out_dir: Path,
    model_factory: Callable[[], SelfTrainingModel],
    *,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run (or resume) the experiment; returns every result row. Each generation's
    samples are kept under ``samples/``, so a resumed run retrains nothing it measured."""
    results = ResultsFile(out_dir, "collapse", settings)
    samples_dir = Path(out_dir) / "samples"
    samples_dir.mkdir(exist_ok=True)
    measure = Measure(settings, embed)
    model: SelfTrainingModel | None = None
    total = settings.seeds * len(settings.policies) * (settings.generations + 1)
    for seed in range(settings.seeds):
        real: RealData | None = None
        for policy in settings.policies:
            data: DataPolicy | None = None
            for generation in range(settings.generations + 1):
                saved = samples_dir / _samples_name(seed, policy, generation)
                done = results.get(seed=seed, policy=policy, generation=generation)
                shared = results.get(seed=seed, generation=0) if generation == 0 else None
                if done is None and shared is not None and saved.exists():
                    done = {**shared, "policy": policy}
                    results.add(done)
                if done is not None and saved.exists():
                    samples = saved.read_text().split("\n")
                else:
                    real = real or RealData.draw(settings, seed)
                    data = data or _replay(policy, settings, real, samples_dir, seed, generation)
                    training = data.data() if generation else real.train
                    model = model or model_factory()
                    sample_seed = int(np.random.default_rng([seed, 2, generation]).integers(2**31))
                    model.train(training, seed=sample_seed)
                    samples = model.sample(settings.real_lines, sample_seed)
                    row = done or measure(model, real, samples, sample_seed)
                    write_atomically(saved, "\n".join(samples))
                if done is None:
                    results.add(
                        {
                            "seed": seed,
                            "policy": policy,
                            "generation": generation,
                            "train_lines": len(training),
                            **row,
                        }
                    )
                    progress(
                        f"[collapse] {results.count()}/{total}  seed {seed}  {policy:<17}"
                        f" generation {generation:>2}  perplexity {row['perplexity']:.3f}"
                        f"  pass@1 {row['pass@1']:.3f}  tail {row['tail_survival']:.3f}"
                    )
                if data is not None:
                    data.add(samples)
    return results.rows()


def _replay(
    policy: str, settings: CollapseSettings, real: RealData, samples_dir: Path, seed: int, upto: int
) -> DataPolicy:
    """The data policy after the saved samples of generations 0..upto-1."""
    data = DataPolicy(policy, settings.world, real.train)
    for generation in range(upto):
        data.add((samples_dir / _samples_name(seed, policy, generation)).read_text().split("\n"))
    return data


def _samples_name(seed: int, policy: str, generation: int) -> str:
    """Generation 0 (trained on the real data) is the same for every policy."""
    return f"seed{seed}-g0.txt" if generation == 0 else f"seed{seed}-{policy}-g{generation}.txt"
