"""Engine logic with a scripted LM (real SQLite store, real domain, real pyribs archive)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import openended
from openended.config import load_config
from openended.domains.base import Evaluation
from openended.domains.symbolic_regression import SymbolicRegressionDomain
from openended.engine import Search, SearchError
from openended.lm.base import GenerationRequest, GenerationResult
from openended.lm.scripted import ScriptedLM
from openended.store import RunStore
from tests.conftest import seeded_script


def rows(run_dir: Path) -> list[tuple[Any, ...]]:
    with RunStore(run_dir) as store:
        return [
            (c.id, c.batch, c.operator, c.parents, c.genome, c.status, c.fitness)
            for c in store.candidates()
        ]


def test_runs_to_the_evaluation_budget_and_stores_every_candidate(
    small_config, scripted_lm
) -> None:
    result = openended.run(small_config(max_evaluations=60), lm=scripted_lm)
    assert result.outcome.stopped_by == "budget: evaluations (60)"
    stored = rows(result.run_dir)
    assert [r[0] for r in stored] == list(range(1, len(stored) + 1))  # ids contiguous
    statuses = {r[5] for r in stored}
    assert {"valid", "invalid", "parse_error"} <= statuses
    assert sum(r[5] in ("valid", "invalid") for r in stored) == 60
    with RunStore(result.run_dir) as store:
        failures = [c for c in store.candidates() if c.status != "valid"]
        assert all(c.error for c in failures)  # every failure says why
        assert any("could not parse" in (c.error or "") for c in failures)
        assert any("unknown name 'q'" in (c.error or "") for c in failures)
        assert store.get_meta("usage")["evaluations"] == 60


def test_lineage_points_to_earlier_valid_candidates(small_config, scripted_lm) -> None:
    result = openended.run(small_config(), lm=scripted_lm)
    by_id = {r[0]: r for r in rows(result.run_dir)}
    for _, batch, operator, parents, *_ in by_id.values():
        if operator == "seed":
            assert parents == () and batch == 0
            continue
        assert parents
        for parent in parents:
            assert by_id[parent][5] == "valid"
            assert by_id[parent][1] <= batch - 1  # selected from batches before the last


def test_archive_and_metrics_agree_with_the_store(small_config, scripted_lm) -> None:
    result = openended.run(small_config(), lm=scripted_lm)
    metrics = result.metrics
    assert len(metrics) == result.outcome.batches
    assert metrics["evaluations"].is_monotonic_increasing
    assert metrics["qd_score"].is_monotonic_increasing  # MAP-Elites never loses QD-score
    last = metrics.iloc[-1]
    assert last["num_elites"] == len(result.archive)
    assert last["best_fitness"] == pytest.approx(result.archive["fitness"].max())
    assert last["qd_score"] == pytest.approx((result.archive["fitness"] + 10.0).sum())
    assert result.best["genome"].endswith("m * (v ** 2 + u ** 2 + w ** 2)")  # fitted
    with RunStore(result.run_dir) as store:
        best = store.candidate(int(result.best["candidate_id"]))
    assert best.proposed == "0.5 * m * (v ** 2 + u ** 2 + w ** 2)"  # what the model wrote
    # the literal and the term's fitted multiplier together make the true 0.5
    multiplier = best.details["scale"][1] * best.details["constants"]["k0"]
    assert multiplier == pytest.approx(0.5, abs=0.01)


@pytest.mark.slow  # seconds: not the quick tier
def test_same_seed_same_run_different_seed_different_run(tmp_path, small_config) -> None:
    def run(seed: int, name: str) -> list:
        config = {**small_config(), "seed": seed, "name": name}
        return rows(openended.run(config, lm=ScriptedLM(seeded_script)).run_dir)

    assert run(1, "a") == run(1, "b")
    assert run(1, "c") != run(2, "d")


class Interrupt(Exception):
    pass


def test_resume_after_a_crash_continues_exactly(small_config) -> None:
    reference = openended.run(
        {**small_config(max_evaluations=80), "name": "whole"}, lm=ScriptedLM(seeded_script)
    )

    def crash(metrics: Any) -> None:
        if metrics.batch == 4:
            raise Interrupt

    config = {**small_config(max_evaluations=80), "name": "crashed"}
    with pytest.raises(Interrupt):
        openended.run(config, lm=ScriptedLM(seeded_script), on_batch=crash)
    run_dir = reference.run_dir.parent / "crashed"
    assert RunStore(run_dir).last_batch() == 4
    resumed = openended.resume(run_dir, lm=ScriptedLM(seeded_script))
    assert rows(run_dir) == rows(reference.run_dir)
    assert resumed.archive.equals(reference.archive)


def test_resume_with_a_larger_budget_continues_ids(small_config, scripted_lm) -> None:
    first = openended.run(small_config(max_evaluations=30), lm=scripted_lm)
    before = rows(first.run_dir)
    openended.resume(first.run_dir, overrides=["budget.max_evaluations=70"], lm=scripted_lm)
    after = rows(first.run_dir)
    assert after[: len(before)] == before
    assert [r[0] for r in after] == list(range(1, len(after) + 1))
    assert sum(r[5] in ("valid", "invalid") for r in after) == 70
    assert openended.load_config(first.run_dir / "config.toml").budget.max_evaluations == 70


class FlakyLM(ScriptedLM):
    """Fails on its second call."""

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        if self.calls == 1:
            self.calls += 1
            raise ConnectionError("server went away")
        return await super().generate(requests)


def test_a_failed_lm_call_is_recorded_and_the_search_goes_on(small_config) -> None:
    result = openended.run(small_config(max_evaluations=40), lm=FlakyLM(seeded_script))
    stored = rows(result.run_dir)
    with RunStore(result.run_dir) as store:
        errors = [c for c in store.candidates() if c.status == "lm_error"]
    assert len(errors) == 8 and {c.batch for c in errors} == {2}
    assert all("ConnectionError: server went away" in (c.error or "") for c in errors)
    assert all(c.prompt for c in errors)
    assert sum(r[5] in ("valid", "invalid") for r in stored) == 40


def test_no_valid_seed_is_a_clear_error(small_config, scripted_lm) -> None:
    config = small_config()
    config["domain"]["seeds"] = ["q", "m +* v"]
    with pytest.raises(SearchError, match=r"none of the 2 seeds is valid.*unknown name 'q'"):
        openended.run(config, lm=scripted_lm)


@pytest.mark.parametrize(
    ("budget", "reason"),
    [
        ({"max_lm_calls": 3, "max_evaluations": 0}, "LM calls (3)"),
        ({"max_tokens": 200, "max_evaluations": 0}, "tokens (200)"),
    ],
)
def test_other_budgets(small_config, scripted_lm, budget: dict, reason: str) -> None:
    result = openended.run(small_config(**budget), lm=scripted_lm)
    assert result.outcome.stopped_by == f"budget: {reason}"
    with RunStore(result.run_dir) as store:
        usage = store.get_meta("usage")
    if "max_lm_calls" in budget:
        assert usage["lm_calls"] == 3 == scripted_lm.calls
    else:
        assert usage["tokens"] >= 200
        with RunStore(result.run_dir) as store:
            per_batch = [
                row[0] for row in store.db.execute("SELECT tokens FROM batches ORDER BY batch")
            ]
        assert sum(per_batch) == usage["tokens"]
        assert sum(per_batch[:-1]) < 200  # stops at the first batch that reaches the limit


def test_wall_time_budget(small_config) -> None:
    start = time.perf_counter()
    result = openended.run(
        small_config(max_evaluations=0, max_seconds=0.6), lm=ScriptedLM(seeded_script, latency=0.1)
    )
    assert result.outcome.stopped_by == "budget: wall time (0.6 s)"
    assert time.perf_counter() - start < 5


class SlowDomain(SymbolicRegressionDomain):
    events: list[tuple[str, float, float]]

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        start = time.perf_counter()
        await asyncio.sleep(0.05)
        result = await super().evaluate(genomes)
        self.events.append(("evaluate", start, time.perf_counter()))
        return result


class SlowLM(ScriptedLM):
    events: list[tuple[str, float, float]]

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        start = time.perf_counter()
        await asyncio.sleep(0.05)
        result = await super().generate(requests)
        self.events.append(("generate", start, time.perf_counter()))
        return result


async def test_generation_overlaps_evaluation(tmp_path, small_config) -> None:
    config = load_config(small_config(max_evaluations=80))
    domain = SlowDomain(config.domain_options())  # type: ignore[arg-type]
    lm = SlowLM(seeded_script)
    domain.events, lm.events = [], []
    with RunStore(tmp_path / "run", create=True) as store:
        await Search(config=config, domain=domain, lm=lm, store=store).run()
    generations = [e for e in lm.events]
    evaluations = [e for e in domain.events][1:]  # after the seeds
    overlapping = sum(
        1 for _, g0, g1 in generations for _, e0, e1 in evaluations if g0 < e1 and e0 < g1
    )
    assert len(generations) >= 5
    assert overlapping >= len(generations) - 2


class DeadLM(ScriptedLM):
    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.calls += 1
        raise ConnectionRefusedError("nobody there")


def test_a_dead_model_stops_the_search_instead_of_spinning(small_config) -> None:
    config = small_config(max_evaluations=40)
    config["search"]["max_failed_batches"] = 3
    lm = DeadLM(seeded_script)
    result = openended.run(config, lm=lm)
    assert lm.calls == 3
    assert result.outcome.stopped_by.startswith(
        "the language model failed on every request of 3 batches in a row; last error: "
        "ConnectionRefusedError: nobody there"
    )
    stored = rows(result.run_dir)
    seeds = sum(row[2] == "seed" for row in stored)
    assert seeds >= 1 and len(stored) == seeds + 3 * 8  # every failure is stored


def test_a_search_that_can_only_fail_stops(small_config) -> None:
    """Completions that never parse used to loop forever under an evaluation budget."""
    config = small_config(max_evaluations=40)
    config["search"]["max_fruitless_batches"] = 3
    result = openended.run(config, lm=ScriptedLM([" )(garbage"]))
    assert result.outcome.stopped_by.startswith(
        "no child of 3 batches in a row could be evaluated (last batch: 8 parse error; "
    )
    stored = rows(result.run_dir)
    assert sum(row[5] == "parse_error" for row in stored) == 3 * 8
