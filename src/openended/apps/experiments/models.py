"""The models that the self-training experiments train generation after generation: each
`train` starts afresh from the same starting point (the n-gram model from nothing, the
embedded model from its released weights) on that generation's data, as in Shumailov et
al. 2024 and Gerstgrasser et al. 2024."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from openended.apps.experiments.ngram import NGramLM


class SelfTrainingModel(Protocol):
    """A model that can be retrained on lines, sampled, prompted and scored."""

    name: str

    def train(self, lines: Sequence[str], seed: int) -> None:
        """Replace the model by one trained from the starting point on `lines`."""

    def sample(self, count: int, seed: int) -> list[str]:
        """`count` lines sampled at temperature 1."""

    def complete(self, prompts: Sequence[str], samples: int, seed: int) -> list[list[str]]:
        """`samples` completed lines (prompt included) per prompt."""

    def perplexity(self, lines: Sequence[str]) -> float:
        """Per-token perplexity of held-out lines."""


class NGramModel:
    """The CPU-sized default: an interpolated absolute-discounting n-gram model
    (`openended.apps.experiments.ngram`), trained in milliseconds."""

    name = "ngram"

    def __init__(self, vocabulary: Sequence[str], *, order: int = 5) -> None:
        self.vocabulary = list(vocabulary)
        self.order = order
        self.lm = NGramLM(self.vocabulary, order=order)

    def train(self, lines: Sequence[str], seed: int) -> None:
        self.lm = NGramLM(self.vocabulary, order=self.order).fit(lines)

    def sample(self, count: int, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        return [" ".join(self.lm.sample(rng)) for _ in range(count)]

    def complete(self, prompts: Sequence[str], samples: int, seed: int) -> list[list[str]]:
        rng = np.random.default_rng(seed)
        out = []
        for prompt in prompts:
            words = prompt.split()
            out.append([" ".join(words + self.lm.sample(rng, words)) for _ in range(samples)])
        return out

    def perplexity(self, lines: Sequence[str]) -> float:
        return self.lm.perplexity(lines)


class EmbeddedModel:
    """The embedded SmolLM2-135M-Instruct, fine-tuned afresh each generation (all weights,
    TRL's SFTTrainer via `openended.apps.training`) on lines that follow a fixed prefix.
    Slow on CPUs: minutes per generation."""

    name = "embedded"
    PREFIX = "Equation:"

    def __init__(
        self,
        work_dir: Path,
        *,
        epochs: float = 2.0,
        learning_rate: float = 5e-5,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        from openended.lm import embedded

        self.base = embedded.fetch()
        self.work_dir = Path(work_dir)
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.progress = progress
        self._lm = self._load(self.base)

    def _load(self, path: Path):
        from openended.lm.local import TransformersLM

        return TransformersLM(path, speculative="off", max_batch_size=64)

    def train(self, lines: Sequence[str], seed: int) -> None:
        from openended.apps.training.finetune import Example, FinetuneSettings, finetune

        out = self.work_dir / "model"
        shutil.rmtree(out, ignore_errors=True)
        examples = [Example(self.PREFIX, f" {line}\n") for line in lines]
        settings = FinetuneSettings(
            method="full",
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            batch_size=16,
            max_length=64,
            seed=seed,
            convert=False,  # scored teacher-forced on the transformers backend
        )
        finetune(self.base, examples, out, settings, progress=self.progress)
        self._lm = self._load(out)

    def _generate(self, prompts: Sequence[str], samples: int, seed: int) -> list[list[str]]:
        from openended.lm.base import GenerationRequest

        requests = [
            GenerationRequest(
                prompt=prompt,
                n=samples,
                max_tokens=16,
                temperature=1.0,
                stop=("\n",),
                seed=seed + i,
            )
            for i, prompt in enumerate(prompts)
        ]
        results = self._lm.generate_sync(requests)
        return [[g.text for g in result.generations] for result in results]

    def sample(self, count: int, seed: int) -> list[str]:
        return [text.strip() for text in self._generate([self.PREFIX], count, seed)[0]]

    def complete(self, prompts: Sequence[str], samples: int, seed: int) -> list[list[str]]:
        texts = self._generate([f"{self.PREFIX} {p}" for p in prompts], samples, seed)
        return [[f"{p}{t}".strip() for t in row] for p, row in zip(prompts, texts, strict=True)]

    def perplexity(self, lines: Sequence[str]) -> float:
        scored = self._lm.completion_logprobs(self.PREFIX, [f" {line}\n" for line in lines])
        total = sum(log_p for log_p, _ in scored)
        tokens = sum(count for _, count in scored)
        return float(np.exp(-total / tokens))
