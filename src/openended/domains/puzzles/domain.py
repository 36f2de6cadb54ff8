"""Generate mode: evolve new (puzzle, solution) pairs (Haluptzok et al. 2022, arXiv
2207.14502), kept only when verified in the sandbox and not vacuous, scored by how
learnable they are for the current solver: solved sometimes but not always, the minimal
criterion of POET (Wang et al. 2019, arXiv 1901.01753)."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from openended.domains.base import Axis, Evaluation
from openended.domains.puzzles.p3 import (
    ANSWER_TYPES,
    Puzzle,
    answer_type_bin,
    load_puzzles,
    split_by_family,
)
from openended.domains.puzzles.puzzle_source import PuzzleParseError, PuzzleSource, parse_puzzle
from openended.domains.puzzles.solve import solve_puzzles
from openended.domains.puzzles.verify import PuzzleVerifier
from openended.lm.base import LanguageModel
from openended.sandbox import Limits

SEEDS_FILE = Path(__file__).parent / "seeds.json"
PUZZLE_STOPS = ("\ndef sat", "\n```", "\nassert ", "\nprint(", "\nif __name__", "\n# ")


class PuzzlesConfig(BaseModel):
    """Options of the ``[domain]`` table for ``name = "puzzles"`` (generate mode)."""

    model_config = ConfigDict(extra="forbid")

    seeds: Path | None = Field(
        None, description="P3-format JSON of seed puzzles (default: built in)"
    )
    max_seeds: int = Field(16, ge=1, description="seed puzzles used (a seeded sample)")
    held_out: float = Field(
        0.0, ge=0, lt=1, description="fraction of seed families never used (held out for tests)"
    )
    split_seed: int = Field(0, description="seed of the held-out split and the seed sample")
    solver_attempts: int = Field(
        4, ge=0, description="solutions the model tries per new puzzle (0: fitness 1 for all)"
    )
    solver_temperature: float = Field(0.8, ge=0)
    solver_max_tokens: int = Field(96, ge=1)
    random_tries: int = Field(8, ge=0, description="random answers tried by the vacuity check")
    max_sat_nodes: int = Field(120, ge=2, description="AST size of sat at the top of its axis")
    size_bins: int = Field(10, ge=1)
    workers: int = Field(2, ge=1, description="sandbox runs at once")
    wall_seconds: float = Field(4.0, gt=0, description="per sandbox run")
    memory_mb: int = Field(1024, ge=64)


class PuzzlesDomain:
    """New programming puzzles with verified solutions.

    Genome: ``def sat(x: T, ...)`` and ``def sol(...)`` source. Valid when ``sat(sol())``
    is True in the sandbox and the answer has type T, and the puzzle is not vacuous (see
    `PuzzleVerifier.vacuity`). Fitness: ``4 r (1 - r)`` where ``r = (c + 1) / (n + 2)``
    is the solver's success rate with Laplace smoothing (c of n = `solver_attempts`
    solutions by the run's model solve it): highest for puzzles solved about half the
    time, lower for those always or never solved. Descriptors: answer type, AST size of
    sat.
    """

    name: ClassVar[str] = "puzzles"
    Config: ClassVar[type[BaseModel]] = PuzzlesConfig
    default_operator_weights: ClassVar[dict[str, float]] = {"lmx": 0.7, "mutation": 0.3}
    operator_sampling: ClassVar[dict[str, dict[str, Any]]] = {
        "lmx": {"max_tokens": 192, "stop": PUZZLE_STOPS},
        "mutation": {"max_tokens": 192, "stop": PUZZLE_STOPS},
    }
    fitness_floor = 0.0

    def __init__(self, config: PuzzlesConfig, *, base_dir: Path | None = None) -> None:
        self.config = config
        self._seeds = seed_genomes(config)  # before the sandboxes: a bad file leaks nothing
        self.axes = (
            Axis(
                "answer_type",
                0,
                len(ANSWER_TYPES) + 1,
                len(ANSWER_TYPES) + 1,
                f"answer type: {', '.join(ANSWER_TYPES)}, other",
            ),
            Axis("sat_size", 0, config.max_sat_nodes, config.size_bins, "AST nodes in sat"),
        )
        limits = Limits(
            wall_seconds=config.wall_seconds,
            cpu_seconds=config.wall_seconds,
            memory_mb=config.memory_mb,
        )
        self.verifier = PuzzleVerifier(
            solution_limits=limits,
            check_limits=limits,
            workers=config.workers,
            random_tries=config.random_tries,
        )
        self.lm: LanguageModel | None = None

    # -- the contract -----------------------------------------------------------------------

    def use_language_model(self, lm: LanguageModel) -> None:
        """The solver whose success rate the fitness measures."""
        self.lm = lm

    @property
    def prompt_dir(self) -> Path | None:
        return Path(__file__).parent / "prompts"

    def prompt_context(self) -> Mapping[str, Any]:
        return {"description": "Python programming puzzles with their solutions"}

    def seeds(self) -> Sequence[str]:
        return list(self._seeds)

    def parse(self, completion: str) -> str | None:
        try:
            return parse_puzzle(completion).genome
        except PuzzleParseError:
            return None

    def fingerprint(self, genome: str) -> str | None:
        try:
            return parse_puzzle(genome).fingerprint
        except PuzzleParseError:
            return None

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        sources: list[PuzzleSource | None] = []
        for genome in genomes:
            try:
                sources.append(parse_puzzle(genome))
            except PuzzleParseError:
                sources.append(None)
        checks = await asyncio.gather(*(self._check(s) for s in sources))
        solved = await self._solve_rates(
            [s if c is None else None for s, c in zip(sources, checks, strict=True)]
        )
        attempts = self.config.solver_attempts
        results = []
        for source, problem, correct in zip(sources, checks, solved, strict=True):
            if source is None:
                results.append(Evaluation.invalid("not a sat/sol pair"))
            elif problem is not None:
                results.append(Evaluation.invalid(problem))
            else:
                size = _ast_size(source.sat)
                metrics = {
                    "sat_size": float(size),
                    "answer_type": float(answer_type_bin(source.ans_type)),
                }
                fitness = 1.0
                if correct is not None:
                    rate = (correct + 1) / (attempts + 2)
                    fitness = 4.0 * rate * (1.0 - rate)
                    metrics["solver_correct"] = float(correct)
                    metrics["solver_attempts"] = float(attempts)
                results.append(
                    Evaluation(
                        fitness=fitness,
                        descriptors=(
                            metrics["answer_type"],
                            float(min(size, self.config.max_sat_nodes - 1e-9)),
                        ),
                        metrics=metrics,
                    )
                )
        return results

    async def _check(self, source: PuzzleSource | None) -> str | None:
        """Why the pair is not valid (None when it is)."""
        if source is None:
            return "not a sat/sol pair"
        verdict = await self.verifier.verify(source.sat, source.ans_type, source.sol)
        if not verdict.solved:
            return f"the solution does not solve the puzzle: {verdict.reason}"
        return await self.verifier.vacuity(source.sat, source.ans_type, seed=_seed(source.sat))

    async def _solve_rates(self, sources: Sequence[PuzzleSource | None]) -> list[int | None]:
        """How many of the solver's attempts solve each valid puzzle (None: not measured)."""
        attempts = self.config.solver_attempts
        if self.lm is None or attempts == 0:
            return [None] * len(sources)
        chosen = [(i, s) for i, s in enumerate(sources) if s is not None]
        if not chosen:
            return [None] * len(sources)
        puzzles = [s.as_puzzle(f"generated-{_seed(s.sat)}") for _, s in chosen]
        report = await solve_puzzles(
            self.lm,
            puzzles,
            self.verifier,
            samples=attempts,
            temperature=self.config.solver_temperature,
            max_tokens=self.config.solver_max_tokens,
            seed=self.config.split_seed,
            chunk=len(puzzles),
        )
        rates: list[int | None] = [None] * len(sources)
        for (i, _), result in zip(chosen, report.results, strict=True):
            rates[i] = result.correct
        return rates

    def sandbox_info(self) -> Mapping[str, Any]:
        return self.verifier.solutions.info

    def close(self) -> None:
        self.verifier.close()


def seed_genomes(config: PuzzlesConfig) -> list[str]:
    """The seed (sat, sol) genomes a config names: a seeded sample of `max_seeds` puzzles
    with a reference solution, held-out families left out. No sandbox needed."""
    puzzles = load_puzzles(config.seeds or SEEDS_FILE)
    if config.held_out:
        puzzles, _ = split_by_family(puzzles, held_out=config.held_out, seed=config.split_seed)
    genomes = puzzle_genomes(puzzles)
    random.Random(config.split_seed).shuffle(genomes)
    return genomes[: config.max_seeds]


def puzzle_genomes(puzzles: Sequence[Puzzle]) -> list[str]:
    """The (sat, sol) genome of each puzzle with a reference solution (its first one)."""
    genomes = []
    for p in puzzles:
        for solution in p.reference_solutions()[:1]:
            try:
                genomes.append(parse_puzzle(f"{p.sat}\n\n{solution}").genome)
            except (PuzzleParseError, ValueError):
                continue  # e.g. numbers over Python's digit limit for parsing
    return genomes


def _ast_size(code: str) -> int:
    try:
        return sum(1 for _ in ast.walk(ast.parse(code)))
    except (SyntaxError, ValueError):
        return 0


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
