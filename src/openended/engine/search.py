"""The asynchronous search loop: MAP-Elites with language-model variation.

Pipeline (one batch at a time, two in flight): select parents -> build prompts -> batched
LM generation -> parse -> evaluate -> insert into the archive -> commit to the store.
Generation of batch b overlaps evaluation of batch b-1.

Reproducibility: batch b always selects its parents from the archive holding exactly the
batches 0..b-2, however long each stage takes, and every random choice of batch b comes
from a generator seeded by (seed, b). A resumed run therefore continues exactly as the
uninterrupted run would have (given a deterministic language model).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openended.archive.elite import Elite
from openended.config import Config
from openended.domains.base import (
    Domain,
    Evaluation,
    FingerprintingDomain,
    SandboxedDomain,
    evaluations_per_child,
    operator_sampling,
)
from openended.engine.bandit import OperatorBandit
from openended.engine.budget import Budget, Usage
from openended.engine.population import Population
from openended.engine.restore import trailing_batches
from openended.errors import InfrastructureError, UserError
from openended.executor.base import Evaluator, LocalEvaluator
from openended.lm.base import GenerationRequest, GenerationResult, LanguageModel
from openended.operators import Operator, SamplingSettings, load_template, operator_class
from openended.store.run_store import BatchMetrics, CandidateRecord, RunStore, Status

SEED_OPERATOR = "seed"
logger = logging.getLogger(__name__)


class SearchError(UserError, RuntimeError):
    """The search cannot start or continue (e.g. no seed is valid)."""


@dataclass
class _Batch:
    index: int
    records: list[CandidateRecord]
    lm_seconds: float = 0.0
    completion_tokens: int = 0
    tokens: int = 0
    calls: int = 0


@dataclass
class SearchOutcome:
    """How a session of the search ended. `ok` is False when it stopped before its budget
    (the model failed batch after batch, or it was interrupted): the run can be resumed."""

    stopped_by: str
    batches: int
    metrics: BatchMetrics | None
    history: list[BatchMetrics] = field(default_factory=list)
    ok: bool = True


def draw_order(domain_defaults: Iterable[str], names: Iterable[str]) -> list[str]:
    """The order a search draws operators in: the domain's (its
    ``default_operator_weights`` order), then the other registered ones by name."""
    names = set(names)
    first = [n for n in domain_defaults if n in names]
    return first + sorted(names - set(first))


def build_operators(config: Config, domain: Domain) -> list[tuple[Operator, float]]:
    """The configured operators with their weights (weight-0 operators are left out). An
    unset weight takes the domain's default (`domain.default_operator_weights`); unset
    ``max_tokens``/``stop`` take the domain's (`domain.operator_sampling`, optional), then
    the operator's."""
    weights = config.operators.weights(domain.default_operator_weights)
    domain_sampling = operator_sampling(domain)
    tables = dict(config.operators.items())
    built = []
    for name in draw_order(domain.default_operator_weights, tables):
        op_config, weight = tables[name], weights[name]
        if weight <= 0:
            continue
        cls = operator_class(name)
        template = load_template(
            cls.template_name or name, override=op_config.template, domain_dir=domain.prompt_dir
        )
        preset = domain_sampling.get(name, {})
        stop = op_config.stop if op_config.stop is not None else preset.get("stop")
        sampling = SamplingSettings(
            temperature=op_config.temperature,
            top_p=op_config.top_p,
            max_tokens=op_config.max_tokens or preset.get("max_tokens") or cls.default_max_tokens,
            stop=tuple(stop if stop is not None else cls.default_stop),
        )
        operator = cls(
            template=template, domain=domain, sampling=sampling, parents=op_config.parents
        )
        built.append((operator, weight))
    if not built:
        raise SearchError("every operator has weight 0: set operators.<name>.weight")
    return built


class Search:
    """One session of a run: continues from what the store holds until a budget is spent.

    Args:
        config: the run configuration.
        domain: the domain instance.
        lm: the language model.
        store: the run store (may already hold candidates: the search resumes).
        on_batch: called with the metrics after each committed batch.
        evaluator: where evaluations run (default: the domain, in this process).
    """

    def __init__(
        self,
        *,
        config: Config,
        domain: Domain,
        lm: LanguageModel,
        store: RunStore,
        on_batch: Callable[[BatchMetrics], None] | None = None,
        evaluator: Evaluator | None = None,
    ) -> None:
        self.config = config
        self.domain = domain
        self.evaluator = evaluator or LocalEvaluator(domain)
        self.lm = lm
        self.store = store
        self.on_batch = on_batch
        self.budget = Budget(config.budget)
        fingerprint = domain.fingerprint if isinstance(domain, FingerprintingDomain) else None
        self.population = Population(
            axes=domain.axes,
            kind=config.archive.kind,
            qd_score_offset=domain.fitness_floor,
            cells=config.archive.cells,
            seed=config.seed,
            islands=config.search.islands,
            migration_interval=config.search.migration_interval,
            fingerprint=fingerprint if config.search.reject_duplicates else None,
        )
        self.archive = self.population.archive
        self.operators = build_operators(config, domain)
        self.bandit = OperatorBandit(
            [op.name for op, _ in self.operators],
            [w for _, w in self.operators],
            adapt=config.search.adapt_operators,
            floor=config.search.operator_floor,
        )
        self.usage = Usage()
        self._session_start = time.perf_counter()
        self._elapsed_before = 0.0
        self._next_id = 1
        self._fruitless_before = 0  # batches in a row with no child evaluated, on resume
        self._failed_before = 0  # batches in a row the model failed entirely, on resume
        store.set_meta(
            "archive",
            {
                "axes": [a.__dict__ for a in domain.axes],
                "kind": config.archive.kind,
                "qd_score_offset": domain.fitness_floor,
                "cells": config.archive.cells,
                "seed": config.seed,
            },
        )
        if isinstance(domain, SandboxedDomain):
            _record_sandbox(store, domain.sandbox_info())
        self._inserted = -1  # highest batch inserted into the archive
        self._release = -1  # highest batch the consumer may insert into the archive
        self._changed = asyncio.Condition()
        self.history: list[BatchMetrics] = []
        self._stop_reason: str | None = None
        self.in_flight: list[int] = []
        """Indices of the batches generated or being generated, not yet committed."""

    # -- time and usage -------------------------------------------------------------------

    def elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._session_start

    def _restore(self) -> _Batch | None:
        """Rebuild the archive from the store. Returns the last committed batch, to be
        inserted once the next batch's parents are selected (see the module docstring)."""
        store = self.store
        self.usage = Usage(**store.get_meta("usage", {}))
        self._elapsed_before = self.usage.elapsed
        self._next_id = store.next_id()
        last = store.last_batch()
        if last is None:
            return None
        replay: list[CandidateRecord] = []
        early: list[CandidateRecord] = []
        records = list(store.candidates())
        # the stopping rules' streaks continue where the last session left them
        self._fruitless_before = trailing_batches(
            records, lambda b: not any(r.status in (Status.VALID, Status.INVALID) for r in b)
        )
        self._failed_before = trailing_batches(
            records, lambda b: all(r.status == Status.LM_ERROR for r in b)
        )
        for record in records:
            (replay if record.batch == last and last > 0 else early).append(record)
        self.population.absorb_all(early)
        self.bandit.observe(early)
        self._inserted = last - 1 if last > 0 else 0
        self._release = last - 1
        if last == 0:
            return None
        return _Batch(index=last, records=replay)

    # -- archive --------------------------------------------------------------------------

    def _insert(self, batch: int, records: Sequence[CandidateRecord]) -> None:
        self.population.absorb(batch, records)
        self.bandit.observe(records)

    # -- the stages -----------------------------------------------------------------------

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _generate(self, index: int, size: int) -> _Batch:
        """Select parents and prompt the LM for batch `index` of `size` children."""
        rng = np.random.default_rng([self.config.seed, index])
        weights = self.bandit.weights()  # from batches 0..index-2, as the archive
        population = self.population
        elites = [population.elites(i) for i in range(population.island_count)]
        if not any(elites):
            raise SearchError("the archive is empty: no valid seed to start from")
        plans: list[tuple[Operator, list[Elite], int]] = []
        for j in range(size):
            island = population.island_of(j)
            operator = self.operators[int(rng.choice(len(self.operators), p=weights))][0]
            plans.append((operator, operator.select_parents(elites[island], rng), island))
        requests = [op.request(parents, seed=int(rng.integers(2**62))) for op, parents, _ in plans]
        self._release = index - 1  # batch index-1 may now enter the archive
        await self._notify()

        start = time.perf_counter()
        error: str | None = None
        results: list[GenerationResult] | None = None
        try:
            results = await self.lm.generate(requests)
            if len(results) != len(requests):
                raise RuntimeError(
                    f"LM returned {len(results)} results for {len(requests)} requests"
                )
        except Exception as exc:  # recorded on every candidate of the batch; the search goes on
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("LM call for batch %d failed: %s", index, error)
        seconds = time.perf_counter() - start

        batch = _Batch(index=index, records=[], lm_seconds=seconds, calls=1)
        for j, ((operator, parents, island), request) in enumerate(
            zip(plans, requests, strict=True)
        ):
            parent_ids = tuple(p.candidate_id for p in parents)
            if results is None:
                record = self._lm_error(index, operator, parent_ids, request, error)
                record.island = island
                batch.records.append(record)
                continue
            for generation in results[j].generations:
                batch.completion_tokens += generation.completion_tokens
                batch.tokens += generation.prompt_tokens + generation.completion_tokens
                record = CandidateRecord(
                    batch=index,
                    operator=operator.name,
                    parents=parent_ids,
                    status=Status.PARSE_ERROR,
                    completion=generation.text,
                    prompt=request.prompt,
                    t_generate=seconds,
                    prompt_tokens=generation.prompt_tokens,
                    completion_tokens=generation.completion_tokens,
                    lm_faults=generation.faults,
                    island=island,
                )
                if generation.error or generation.finish_reason == "error":
                    record.status, record.error = Status.LM_ERROR, generation.error or "LM error"
                else:
                    parsed = operator.parse_reply(generation.text, parents, request)
                    if parsed.genome is None:
                        record.status = (
                            Status(parsed.status) if parsed.status != "ok" else Status.PARSE_ERROR
                        )
                        record.error = parsed.error or "could not parse the completion"
                    else:
                        record.genome, record.status = parsed.genome, Status.PENDING
                batch.records.append(record)
        return batch

    @staticmethod
    def _lm_error(
        index: int,
        operator: Operator,
        parents: tuple[int, ...],
        request: GenerationRequest,
        error: str | None,
    ) -> CandidateRecord:
        return CandidateRecord(
            batch=index,
            operator=operator.name,
            parents=parents,
            status=Status.LM_ERROR,
            prompt=request.prompt,
            error=error,
        )

    async def _evaluate(self, batch: _Batch) -> None:
        seen: dict[str, int] = {}
        fingerprint = self.population.fingerprint
        for position, record in enumerate(batch.records):
            if record.status != Status.PENDING or record.genome is None or fingerprint is None:
                continue
            key = fingerprint(record.genome)
            earlier = self.population.duplicate_of(key)
            if earlier is not None:
                record.status, record.error = (
                    Status.DUPLICATE,
                    f"near-duplicate of candidate {earlier}",
                )
            elif key is not None and key in seen:
                record.status = Status.DUPLICATE
                record.error = f"near-duplicate of candidate #{seen[key] + 1} of this batch"
            elif key is not None:
                seen[key] = position
        pending = [r for r in batch.records if r.status == Status.PENDING and r.genome is not None]
        if not pending:
            return
        start = time.perf_counter()
        try:
            evaluations = await self.evaluator.evaluate([r.genome for r in pending])  # type: ignore[misc]
        except InfrastructureError:
            raise  # nothing is recorded; the run can be resumed
        except Exception as exc:
            evaluations = [
                Evaluation.invalid(f"evaluator failed: {type(exc).__name__}: {exc}")
            ] * len(pending)
        seconds = (time.perf_counter() - start) / len(pending)
        for record, evaluation in zip(pending, evaluations, strict=True):
            self._apply(record, evaluation)
            record.t_evaluate = seconds

    def _apply(self, record: CandidateRecord, evaluation: Evaluation) -> None:
        record.metrics = dict(evaluation.metrics)
        record.details = dict(evaluation.details)
        if evaluation.evaluations > 1:
            record.details["evaluations"] = evaluation.evaluations
        if evaluation.genome is not None and evaluation.genome != record.genome:
            record.proposed, record.genome = record.genome, evaluation.genome
        if evaluation.valid:
            record.status = Status.VALID
            record.fitness = float(evaluation.fitness)  # type: ignore[arg-type]
            if len(evaluation.descriptors) != len(self.domain.axes):
                record.status = Status.INVALID
                record.error = (
                    f"domain gave {len(evaluation.descriptors)} descriptors for "
                    f"{len(self.domain.axes)} axes"
                )
            record.descriptors = tuple(float(d) for d in evaluation.descriptors)
            if not np.all(np.isfinite([record.fitness, *record.descriptors])):
                record.status, record.error = Status.INVALID, "non-finite fitness or descriptors"
        else:
            record.status = Status.INVALID
            record.error = evaluation.feedback or "invalid"

    def _commit(self, batch: _Batch) -> BatchMetrics:
        """Assign ids, insert into the archive, write the batch in one transaction."""
        for record in batch.records:
            record.id = self._next_id
            self._next_id += 1
        self._insert(batch.index, batch.records)
        usage = self.usage
        children = [r for r in batch.records if r.operator != SEED_OPERATOR]
        usage.evaluations += sum(
            int(r.details.get("evaluations", 1))
            for r in batch.records
            if r.status in (Status.VALID, Status.INVALID)
        )  # a refine stage's extra evaluator calls count too
        usage.candidates += len(batch.records)
        usage.valid += sum(r.status == Status.VALID for r in batch.records)
        usage.children += len(children)
        usage.valid_children += sum(r.status == Status.VALID for r in children)
        usage.lm_calls += batch.calls
        usage.tokens += batch.tokens
        usage.elapsed = self.elapsed()
        stats = self.archive.stats()
        metrics = BatchMetrics(
            batch=batch.index,
            evaluations=usage.evaluations,
            lm_calls=usage.lm_calls,
            tokens=usage.tokens,
            elapsed=usage.elapsed,
            num_elites=stats.num_elites,
            coverage=stats.coverage,
            qd_score=stats.qd_score,
            best_fitness=stats.best_fitness,
            valid_rate=usage.valid_children / usage.children if usage.children else 1.0,
            batch_valid_rate=(
                sum(r.status == Status.VALID for r in batch.records) / len(batch.records)
                if batch.records
                else 0.0
            ),
            tokens_per_second=(
                batch.completion_tokens / batch.lm_seconds if batch.lm_seconds > 0 else None
            ),
        )
        operators = self.bandit.state()
        self.store.record_batch(
            batch.records, metrics, meta={"usage": usage.__dict__, "operators": operators}
        )
        logger.info(
            "batch %d operator weights: %s",
            batch.index,
            ", ".join(f"{name} {state['weight']:.2f}" for name, state in operators.items()),
        )
        self.history.append(metrics)
        if self.on_batch is not None:
            self.on_batch(metrics)
        return metrics

    async def _seed(self) -> None:
        genomes = list(self.domain.seeds())
        if not genomes:
            raise SearchError(f"domain {self.domain.name!r} gave no seeds")
        records = []
        for text in genomes:
            genome = self.domain.parse(text)
            records.append(
                CandidateRecord(
                    batch=0,
                    operator=SEED_OPERATOR,
                    parents=(),
                    completion=text,
                    genome=genome,
                    status=Status.PENDING if genome else Status.PARSE_ERROR,
                    error=None if genome else f"could not parse seed {text!r}",
                )
            )
        batch = _Batch(index=0, records=records)
        await self._evaluate(batch)
        if not any(r.status == Status.VALID for r in records):
            problems = "; ".join(f"{r.completion!r}: {r.error}" for r in records)
            raise SearchError(f"none of the {len(records)} seeds is valid: {problems}")
        self._commit(batch)
        self._inserted = 0
        self._release = 0

    # -- the loop -------------------------------------------------------------------------

    def _target_reached(self) -> str:
        """Why the search stops at its target score ('' while it is not reached)."""
        target = self.config.budget.target_score
        best = self.archive.stats().best_fitness
        if target is None or best is None or best < target:
            return ""
        return f"target score reached: best {best:.6g} >= {target:g}"

    def request_stop(self, reason: str) -> None:
        """Start no new batch; finish and commit the ones in flight, then return from
        `run` with ``stopped_by = reason`` (and ``ok = False``)."""
        self._stop_reason = self._stop_reason or reason

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    async def run(self) -> SearchOutcome:
        """Run until a budget is spent; returns why it stopped."""
        self._session_start = time.perf_counter()
        replay = self._restore()
        if self.store.last_batch() is None:
            self.store.set_meta("seed", self.config.seed)
            await self._seed()
        queue: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=1)
        stopped_by = ""
        in_flight: dict[int, int] = {}  # batch index -> children planned
        in_flight_tokens: dict[int, int] = {}
        first_index = (self.store.last_batch() or 0) + 1
        stopped_by = self._target_reached() or stopped_by
        # set (by the consumer) when the target score is reached, or when too many batches in
        # a row had no child evaluated: no further batch is started or recorded
        halted = bool(stopped_by)

        async def produce() -> None:
            nonlocal stopped_by
            index = first_index
            failed_batches = self._failed_before
            per_child = evaluations_per_child(self.domain)
            try:
                while True:
                    await self._wait(lambda i=index: self._inserted >= i - 2)
                    if self._stop_reason is not None or halted:
                        return
                    while True:
                        size, reason = self.budget.batch_size(
                            self.config.search.batch_size,
                            usage=self.usage,
                            pending_evaluations=sum(in_flight.values()),
                            pending_tokens=sum(in_flight_tokens.values()),
                            pending_calls=len(in_flight),
                            elapsed=self.elapsed(),
                            evaluations_per_child=per_child,
                        )
                        if size > 0 or not in_flight or reason is None:
                            break
                        # In-flight work may use less than planned: let it commit, then ask
                        # again. (Always the same situation for the same run, so the
                        # selection stays reproducible.)
                        waiting_for = len(in_flight)
                        self._release = index - 1
                        await self._notify()
                        await self._wait(lambda n=waiting_for: len(in_flight) < n)
                    if size <= 0:
                        stopped_by = f"budget: {reason}"
                        return
                    in_flight[index] = size
                    self.in_flight = sorted(in_flight)
                    batch = await self._generate(index, size)
                    in_flight[index] = per_child * sum(
                        r.status == Status.PENDING for r in batch.records
                    )
                    in_flight_tokens[index] = batch.tokens
                    await queue.put(batch)
                    index += 1
                    if all(r.status == Status.LM_ERROR for r in batch.records):
                        failed_batches += 1
                        limit = self.config.search.max_failed_batches
                        if limit and failed_batches >= limit:
                            stopped_by = (
                                f"the language model failed on every request of {limit} "
                                f"batches in a row; last error: {batch.records[-1].error}"
                            )
                            return
                    else:
                        failed_batches = 0
            finally:
                self._release = 1 << 62
                await self._notify()
                await queue.put(None)

        async def consume() -> None:
            nonlocal stopped_by, halted
            fruitless_batches = self._fruitless_before
            if replay is not None:
                await self._wait(lambda: self._release >= replay.index)
                self._insert(replay.index, replay.records)
                self._inserted = replay.index
                await self._notify()
            while (batch := await queue.get()) is not None:
                if not halted:  # (a batch generated after the stop is not recorded)
                    await self._evaluate(batch)
                    await self._wait(lambda b=batch: self._release >= b.index)
                    self._commit(batch)
                in_flight.pop(batch.index, None)
                in_flight_tokens.pop(batch.index, None)
                self.in_flight = sorted(in_flight)
                if halted:
                    await self._notify()
                    continue
                self._inserted = batch.index
                reached = self._target_reached()
                if reached and not stopped_by:
                    stopped_by, halted = reached, True
                # fruitless: no child evaluated (unparsable, near-duplicates, failed requests)
                evaluated = any(r.status in (Status.VALID, Status.INVALID) for r in batch.records)
                fruitless_batches = 0 if evaluated else fruitless_batches + 1
                limit = self.config.search.max_fruitless_batches
                if limit and fruitless_batches >= limit and not stopped_by:
                    statuses = Counter(str(r.status) for r in batch.records)
                    stopped_by = (
                        f"no child of {limit} batches in a row could be evaluated "
                        f"(last batch: {_counts(statuses)}; last error: "
                        f"{batch.records[-1].error})"
                    )
                    halted = True
                await self._notify()

        producer = asyncio.create_task(produce())
        consumer = asyncio.create_task(consume())
        try:
            await asyncio.gather(producer, consumer)
        finally:
            for task in (producer, consumer):
                task.cancel()
        self.store.set_meta("usage", {**self.usage.__dict__, "elapsed": self.elapsed()})
        ok = self._stop_reason is None and not stopped_by.startswith("the language model")
        outcome = SearchOutcome(
            stopped_by=self._stop_reason or stopped_by or "done",
            batches=len(self.history),
            metrics=self.store.last_metrics(),
            history=self.history,
            ok=ok,
        )
        sessions = list(self.store.get_meta("sessions", []))
        sessions.append(
            {
                "ended_at": time.time(),
                "stopped_by": outcome.stopped_by,
                "ok": outcome.ok,
                "batches": outcome.batches,
                "last_batch": self.store.last_batch(),
            }
        )
        self.store.set_meta("sessions", sessions)
        return outcome


def _record_sandbox(store: RunStore, info: Mapping[str, Any]) -> None:
    """Append the sandbox's isolation to the run's ``sandbox`` meta when it differs from
    the last session's (a run resumed on a machine without bubblewrap says so)."""
    sessions = list(store.get_meta("sandbox", []))
    entry = {**info, "from_batch": (store.last_batch() or -1) + 1}
    if not sessions or {k: v for k, v in sessions[-1].items() if k != "from_batch"} != dict(info):
        store.set_meta("sandbox", [*sessions, entry])


def _counts(statuses: Counter[str]) -> str:
    return ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in statuses.most_common())
