"""Held-out scores of a program-evolution run: its best program and its seed on the
evaluator's ``evaluate_test`` instances, which the search never sees.

Sim et al. (2025, "Beyond the training instances", on LLM-evolved bin-packing heuristics)
found that evolved heuristics often fail to generalise beyond the instances they were
evolved on; the report, ``show`` and ``best_program.py`` therefore give the test score of
the best program beside the seed's. The scores are computed once per best program, in the
sandbox, and kept in ``RUN_DIR/test_scores.json``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openended.domains.program.evaluator import (
    TEST_STAGE,
    ProgramEvaluator,
    StageOutcome,
    has_function,
)
from openended.domains.program.region import find_region
from openended.run_dir import RunDir
from openended.textfiles import read_text

SCORES_NAME = "test_scores.json"


@dataclass(frozen=True)
class HeldOut:
    """One program's training score (as the search saw it) and held-out score."""

    candidate_id: int | None
    genome_sha: str
    train: float | None
    test: float | None
    test_metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Generalisation:
    """The best program and the seed, on training and held-out instances."""

    best: HeldOut
    seed: HeldOut

    def line(self) -> str:
        """One line for a terminal or a file header."""
        return (
            f"test score {_number(self.best.test)} (seed {_number(self.seed.test)}); "
            f"train score {_number(self.best.train)} (seed {_number(self.seed.train)})"
            + (f"; test failed: {self.best.error}" if self.best.error else "")
        )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_generalisation(run_dir: Path) -> Generalisation | None:
    """The scores kept in the run directory, without running anything (None: none yet)."""
    path = Path(run_dir) / SCORES_NAME
    try:
        data = json.loads(path.read_text())
        return Generalisation(best=HeldOut(**data["best"]), seed=HeldOut(**data["seed"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def generalisation(run_dir: Path) -> Generalisation | None:
    """The best program's and the seed's held-out scores, computed where the cache does not
    hold the current best (None: not a program run, its evaluator has no
    ``evaluate_test``, or the archive is empty)."""
    run = RunDir(run_dir)
    config = run.config()
    if config.domain_name != "program":
        return None
    options: Any = config.domain_options()
    source = read_text(options.evaluator, what="evaluator")
    if not has_function(source, TEST_STAGE):
        return None
    with run.store() as store:
        best = run.archive(store).best()
        if best is None:
            return None
        record = store.candidate(best.candidate_id)
        seeds = [c for c in store.candidates() if c.operator == "seed" and c.genome is not None]
    region = find_region(read_text(options.initial, what="initial program"), options.function)
    cached = cached_generalisation(run_dir)
    best_sha, seed_sha = _sha(best.genome), _sha(region.initial)
    if (
        cached is not None
        and cached.best.genome_sha == best_sha
        and cached.seed.genome_sha == seed_sha
    ):
        return cached
    train = (record.metrics or {}).get("score", best.fitness) if record else best.fitness
    seed_train = seeds[0].metrics.get("score", seeds[0].fitness) if seeds else None
    sandbox = options.sandbox
    evaluator = ProgramEvaluator(
        options.evaluator,
        limits=sandbox.limits(),
        workers=2,
        thresholds=(),
        isolation=sandbox.isolation,
    )
    try:
        programs = [region.assemble(best.genome), region.assemble(region.initial)]
        if best_sha == seed_sha:
            programs = programs[:1]
        outcomes = asyncio.run(_run_tests(evaluator, programs))
    finally:
        evaluator.close()
    seed_outcome = outcomes[-1]
    result = Generalisation(
        best=_held_out(best.candidate_id, best_sha, train, outcomes[0]),
        seed=_held_out(
            seeds[0].id if seeds else None,
            seed_sha,
            None if seed_train is None else float(seed_train),
            seed_outcome,
        ),
    )
    (Path(run_dir) / SCORES_NAME).write_text(json.dumps(asdict(result), indent=1) + "\n")
    return result


async def _run_tests(evaluator: ProgramEvaluator, programs: list[str]) -> list[StageOutcome]:
    return list(await asyncio.gather(*(evaluator.run_test(p) for p in programs)))


def _held_out(
    candidate_id: int | None, sha: str, train: float | None, outcome: StageOutcome
) -> HeldOut:
    return HeldOut(
        candidate_id=candidate_id,
        genome_sha=sha,
        train=None if train is None else float(train),
        test=outcome.score,
        test_metrics=dict(outcome.metrics),
        error=outcome.error,
    )
