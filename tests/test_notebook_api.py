"""The notebook API: `await openended.arun(...)` inside a running event loop, and a
Domain class defined right here, with no installed entry point."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import BaseModel

import openended
from openended.domains import UnknownDomainError, register_domain
from openended.domains.base import Axis, Evaluation
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM


class GuessConfig(BaseModel):
    target: int = 42


class GuessDomain:
    """Guess a hidden number: a genome is an integer, the fitness −|x − target|."""

    name: ClassVar[str] = "guess"
    Config: ClassVar[type[BaseModel]] = GuessConfig
    default_operator_weights: ClassVar[dict[str, float]] = {"mutation": 1.0}
    fitness_floor = -1000.0
    prompt_dir = None

    def __init__(self, config: GuessConfig) -> None:
        self.target = config.target
        self.axes = [Axis("last digit", 0, 10, 10)]

    def seeds(self) -> Sequence[str]:
        return ["1", "7"]

    def parse(self, completion: str) -> str | None:
        found = re.search(r"-?\d+", completion)
        return found.group(0) if found else None

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        return [
            Evaluation(
                fitness=max(-abs(int(g) - self.target), self.fitness_floor),
                descriptors=(int(g) % 10,),
            )
            for g in genomes
        ]

    def prompt_context(self) -> Mapping[str, Any]:
        return {"description": "Guess the hidden number"}


def numbers(request: GenerationRequest, sample: int) -> str:
    return f" {int(np.random.default_rng([request.seed or 0, sample]).integers(100))}"


def config(tmp_path: Path, name: str) -> dict[str, Any]:
    return {
        "runs_dir": str(tmp_path / "runs"),
        "name": name,
        "search": {"batch_size": 4},
        "budget": {"max_evaluations": 24, "max_seconds": 0},
        "domain": {"target": 42},
    }


def test_arun_in_a_running_loop_with_a_domain_class_defined_here(tmp_path: Path) -> None:
    async def notebook() -> tuple[openended.RunResult, int]:
        ticks = 0

        async def ticker() -> None:  # the notebook's own work, going on meanwhile
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        result = await openended.arun(
            config(tmp_path, "nb"), domain=GuessDomain, lm=ScriptedLM(numbers)
        )
        task.cancel()
        return result, ticks

    result, ticks = asyncio.run(notebook())
    assert ticks > 0  # the caller's loop was not blocked
    assert result.config.domain_name == "guess" and result.config.domain["target"] == 42
    assert result.outcome.metrics is not None and result.outcome.metrics.evaluations >= 24
    assert result.best is not None and result.best["fitness"] > -35  # better than both seeds

    again = openended.resume(
        result.run_dir,
        overrides=["budget.max_evaluations=40"],
        domain=GuessDomain,
        lm=ScriptedLM(numbers),
    )
    assert again.outcome.metrics is not None and again.outcome.metrics.evaluations >= 40


def test_a_domain_instance_is_used_as_it_is(tmp_path: Path) -> None:
    domain = GuessDomain(GuessConfig(target=7))
    result = openended.run(config(tmp_path, "inst"), domain=domain, lm=ScriptedLM(numbers))
    assert result.best is not None and result.best["genome"] == "7"  # a seed is the answer


def test_a_class_that_is_not_a_domain_is_refused_by_name() -> None:
    class Half:
        name = "half"

    with pytest.raises(UnknownDomainError, match="Half is not a Domain: it has no `Config`"):
        register_domain(Half)  # type: ignore[arg-type]


class LoopingGuessDomain(GuessDomain):
    """Like the program domain: its constructor runs an event loop of its own."""

    name: ClassVar[str] = "looping-guess"

    def __init__(self, config: GuessConfig) -> None:
        super().__init__(config)
        self.seed_scores = asyncio.run(self.evaluate(list(self.seeds())))


def test_plain_run_inside_a_running_loop_builds_the_domain_off_the_loop(tmp_path: Path) -> None:
    async def cell() -> openended.RunResult:
        return openended.run(
            config(tmp_path, "cell"), domain=LoopingGuessDomain, lm=ScriptedLM(numbers)
        )

    result = asyncio.run(cell())
    assert result.config.domain_name == "looping-guess" and result.best is not None
