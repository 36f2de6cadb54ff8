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
import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openended.api import off_the_loop
from openended.domains.program.evaluator import (
    TEST_STAGE,
    ProgramEvaluator,
    StageOutcome,
    has_function,
)
from openended.domains.program.region import find_region
from openended.errors import OpenendedError
from openended.run_dir import RunDir
from openended.store.run_store import CandidateRecord
from openended.textfiles import read_text

SCORES_NAME = "test_scores.json"
TEST_TIME_FACTOR = 4.0
"""Held-out sets are larger than training ones: their sandbox time limits are this many
times the search's."""


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
        failed = [
            f"{name}'s test failed: {held.error.splitlines()[0][:200]}"
            for name, held in (("the best", self.best), ("the seed", self.seed))
            if held.error
        ]
        return (
            f"test score {_number(self.best.test)} (seed {_number(self.seed.test)}); "
            f"train score {_number(self.best.train)} (seed {_number(self.seed.train)})"
            + "".join(f"; {f}" for f in failed)
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


def held_out_line(run_dir: Path, *, compute: bool = True) -> str | None:
    """`generalisation` as one line, or why it could not be scored (never raises for a
    problem of the evaluator, the sandbox or the folder: the run's other outputs go on).
    With `compute` False only the kept scores are read (a live report, mid-run)."""
    try:
        scores = generalisation(run_dir) if compute else cached_generalisation(run_dir)
    except (OpenendedError, OSError) as exc:
        return f"not scored ({str(exc).splitlines()[0][:300]})"
    return None if scores is None else scores.line()


def _original_score(record: CandidateRecord) -> float | None:
    """The training score of what was proposed (before the refine stage, if it gained)."""
    score = (record.metrics or {}).get("score", record.fitness)
    if score is None:
        return None
    gain = (record.details or {}).get("refine", {}).get("gain", 0.0)
    return float(score) - (float(gain) if record.proposed is not None else 0.0)


@off_the_loop
def generalisation(run_dir: Path) -> Generalisation | None:
    """The best program's and the seed's held-out scores, computed where the cache does not
    hold them for the current best program, seed and evaluator (None: not a program run,
    its evaluator has no ``evaluate_test``, or the archive is empty)."""
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
    programs = [region.assemble(best.genome), region.assemble(region.initial)]
    best_sha, seed_sha = (_sha(source + "\0" + program) for program in programs)
    cached = cached_generalisation(run_dir)
    if cached is not None and (cached.best.genome_sha, cached.seed.genome_sha) == (
        best_sha,
        seed_sha,
    ):
        return cached
    train = (record.metrics or {}).get("score", best.fitness) if record else best.fitness
    seed_train = _original_score(seeds[0]) if seeds else None
    sandbox = options.sandbox
    evaluator = ProgramEvaluator(
        options.evaluator,
        limits=sandbox.model_copy(
            update={
                "wall_seconds": sandbox.wall_seconds * TEST_TIME_FACTOR,
                "cpu_seconds": sandbox.cpu_seconds * TEST_TIME_FACTOR,
            }
        ).limits(),
        workers=2,
        thresholds=(),
        isolation=sandbox.isolation,
    )
    try:
        outcomes = asyncio.run(
            _run_tests(evaluator, programs[:1] if best_sha == seed_sha else programs)
        )
    finally:
        evaluator.close()
    result = Generalisation(
        best=_held_out(best.candidate_id, best_sha, train, outcomes[0]),
        seed=_held_out(seeds[0].id if seeds else None, seed_sha, seed_train, outcomes[-1]),
    )
    with contextlib.suppress(OSError):  # a read-only copy of a run: scored, not kept
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
