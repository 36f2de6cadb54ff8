"""Diverse text along user-defined axes: QDAIF (Bradley et al. 2023, arXiv 2310.13032) —
MAP-Elites where AI feedback gives both the quality (fitness) and the place on each axis
(descriptors). For evaluation sets (Perez et al. 2022, arXiv 2212.09251) and dataset
augmentation (Evol-Instruct, Xu et al. 2023, arXiv 2304.12244)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from openended.domains.base import Axis, Evaluation
from openended.domains.text.axes import TextTask, load_task, parse_task
from openended.domains.text.judge import Judge
from openended.domains.text.seed_data import read_seed_texts
from openended.embeddings import Embedder, Projection
from openended.lm.base import GenerationRequest, LanguageModel


class TextConfig(BaseModel):
    """Options of the ``[domain]`` table for ``name = "text"``. The task and axes come
    from `axes_file`, or inline (`task`, `quality`, `axes`)."""

    model_config = ConfigDict(extra="forbid")

    axes_file: Path | None = Field(None, description="TOML with task, quality and [[axes]]")
    task: str | None = Field(None, description="inline: what to generate")
    quality: str | None = Field(None, description="inline: the quality criterion")
    axes: list[dict[str, Any]] | None = Field(None, description="inline: the axes")
    seed_data: Path | None = Field(None, description="JSONL, CSV or saved HF dataset folder")
    text_field: str = Field("text", description="the field/column holding the text")
    seed_texts: list[str] | None = Field(None, description="inline seed texts")
    max_seeds: int = Field(64, ge=1)
    generated_seeds: int = Field(4, ge=1, description="written by the model when no seeds given")
    descriptors: str = Field(
        "judge",
        pattern="^(judge|embedding)$",
        description="judge: the axes' bins; embedding: a 2-D map of sentence embeddings",
    )
    embedding_bins: int = Field(10, ge=1, description="bins per embedding dimension")
    judge_repeats: int = Field(1, ge=1, description="questions per axis, averaged")
    judge_method: str = Field("auto", pattern="^(auto|logprobs|parsed)$")
    judge_calibrate: bool = Field(
        True, description="divide log-probability judgements by a content-free prior"
    )
    min_chars: int = Field(12, ge=1)
    max_chars: int = Field(1200, ge=2)


def task_from_config(config: TextConfig) -> TextTask:
    """The task of a ``[domain]`` table: its `axes_file`, or the inline keys."""
    inline = config.task is not None or config.axes is not None
    if config.axes_file is not None and inline:
        from openended.domains.text.axes import AxesFileError

        raise AxesFileError("domain: give axes_file or inline task/axes, not both")
    if config.axes_file is not None:
        return load_task(config.axes_file)
    data: dict[str, Any] = {"task": config.task, "axes": config.axes}
    if config.quality is not None:
        data["quality"] = config.quality
    return parse_task(data, source="[domain]")


class TextDomain:
    """Texts for a task, placed on the axes by a judge model and scored for quality.

    Fitness: the judge's quality score in [0, 1]. Descriptors: the bin of each axis that
    the judge picks, or (``descriptors = "embedding"``) the text's coordinates on the two
    principal directions of the seed texts' all-MiniLM-L6-v2 embeddings. The judge is the
    run's own model unless `use_judge` is called.
    """

    name: ClassVar[str] = "text"
    Config: ClassVar[type[BaseModel]] = TextConfig
    default_operator_weights: ClassVar[dict[str, float]] = {
        "lmx": 0.35,
        "evol": 0.35,
        "contrast": 0.3,
    }
    operator_sampling: ClassVar[dict[str, dict[str, Any]]] = {
        "lmx": {"max_tokens": 96, "stop": ("\n",)},
        "evol": {"max_tokens": 128, "stop": ("\n\n",)},
        "contrast": {"max_tokens": 96, "stop": ("\n",)},
    }
    fitness_floor = 0.0

    def __init__(self, config: TextConfig, *, base_dir: Path | None = None) -> None:
        self.config = config
        self.task: TextTask = task_from_config(config)
        self.projection: Projection | None = None
        self._seeds: list[str] = []
        if config.seed_data is not None:
            self._seeds = read_seed_texts(
                config.seed_data, field=config.text_field, limit=config.max_seeds
            )
        elif config.seed_texts:
            self._seeds = list(config.seed_texts[: config.max_seeds])
        self.judge: Judge | None = None
        if config.descriptors == "embedding" and len(self._seeds) >= 2:
            self._fit_projection()

    def _fit_projection(self) -> None:
        if len(self._seeds) < 2:
            raise ValueError("embedding descriptors need at least 2 seed texts to fix the map")
        self.projection = Projection(Embedder.shared().encode(self._seeds))

    @property
    def axes(self) -> tuple[Axis, ...]:
        if self.config.descriptors == "embedding":
            limit = self.projection.limit if self.projection is not None else 1.0
            bins = self.config.embedding_bins
            return tuple(
                Axis(f"semantic_{i + 1}", -limit, limit, bins, "principal direction of seeds")
                for i in range(2)
            )
        return tuple(
            Axis(a.name, 0, len(a.bins), len(a.bins), a.description) for a in self.task.axes
        )

    # -- the contract -----------------------------------------------------------------------

    def use_language_model(self, lm: LanguageModel) -> None:
        """The judge (and the writer of seeds when none were given)."""
        if self.judge is None:
            self.use_judge(lm)
        if not self._seeds:
            self._seeds = self._write_seeds(lm)
        if self.config.descriptors == "embedding" and self.projection is None:
            self._fit_projection()

    def use_judge(self, lm: LanguageModel) -> None:
        """Judge with another model than the one that writes."""
        c = self.config
        self.judge = Judge(
            lm,
            self.task,
            repeats=c.judge_repeats,
            method=c.judge_method,
            calibrate=c.judge_calibrate,
            seed=0,
        )

    @property
    def prompt_dir(self) -> Path | None:
        return Path(__file__).parent / "prompts"

    def prompt_context(self) -> Mapping[str, Any]:
        return {
            "description": self.task.task,
            "task": self.task.task,
            "quality": self.task.quality,
            "axes": [
                {"name": a.name, "description": a.description, "bins": a.bins}
                for a in self.task.axes
            ],
        }

    def seeds(self) -> Sequence[str]:
        return list(self._seeds)

    def _write_seeds(self, lm: LanguageModel) -> list[str]:
        import asyncio

        prompt = (
            f"Write one example of {self.task.task}. It should be {self.task.quality}. "
            "Reply with the example only, on one line."
        )
        requests = [
            GenerationRequest(
                messages=({"role": "user", "content": prompt},),
                max_tokens=96,
                temperature=1.0,
                stop=("\n",),
                seed=i,
            )
            for i in range(self.config.generated_seeds)
        ]
        results = asyncio.run(lm.generate(requests))
        texts = [self.parse(r.generations[0].text) for r in results]
        return [t for t in dict.fromkeys(texts) if t]

    def parse(self, completion: str) -> str | None:
        """The first non-empty paragraph, without list markers or quotes, if its length is
        within [min_chars, max_chars]."""
        text = completion.strip()
        for prefix in ("- ", "* ", '"'):
            text = text.removeprefix(prefix)
        text = text.split("\n\n")[0].strip().strip('"').strip()
        text = re.sub(r"^\d+[.)]\s+", "", text)  # "3. ..." / "12) ..."
        if not self.config.min_chars <= len(text) <= self.config.max_chars:
            return None
        return text

    def fingerprint(self, genome: str) -> str | None:
        """Exact duplicates up to case, spacing and punctuation."""
        normal = "".join(ch for ch in genome.lower() if ch.isalnum() or ch == " ")
        return hashlib.sha1(" ".join(normal.split()).encode()).hexdigest()

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        if self.judge is None:
            raise RuntimeError("the text domain needs a judge: call use_language_model(lm)")
        judgements = await self.judge.judge(genomes)
        coordinates: list[tuple[float, ...] | None] = [None] * len(genomes)
        if self.projection is not None:
            import asyncio

            vectors = await asyncio.to_thread(Embedder.shared().encode, list(genomes))
            limit = self.projection.limit * (1 - 1e-9)
            coordinates = [
                tuple(float(min(max(v, -limit), limit)) for v in row)
                for row in self.projection(vectors)
            ]
        results = []
        for judgement, coords in zip(judgements, coordinates, strict=True):
            metrics: dict[str, float] = {
                "quality": judgement.quality,
                "judge_logprobs": 1.0 if judgement.method == "logprobs" else 0.0,
                "judge_unparsed": float(judgement.unparsed),
            }
            for axis, dist in zip(self.task.axes, judgement.distributions, strict=True):
                for label, p in zip(axis.bins, dist, strict=True):
                    metrics[f"{axis.name}={label}"] = p
            results.append(
                Evaluation(
                    fitness=judgement.quality,
                    descriptors=coords or tuple(b + 0.5 for b in judgement.bins),
                    metrics=metrics,
                )
            )
        return results
