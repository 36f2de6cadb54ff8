"""Program evolution against a user's evaluator (FunSearch, Romera-Paredes et al. 2024;
AlphaEvolve, Novikov et al. 2025). The genome is the evolved region of the program."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import functools
import hashlib
import logging
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from openended.domains.base import Axis, Evaluation
from openended.domains.program.evaluator import ProgramEvaluator, StageOutcome
from openended.domains.program.refine import (
    PARAMETERS_NAME,
    RefineSettings,
    complete_parameters,
    declared_parameters,
    numeric_value,
    parameter_lists,
    rounded,
    substitute,
    tunable_numbers,
    tune,
)
from openended.domains.program.region import Region, RegionError, find_region
from openended.domains.program.weighted_sum import returned_value
from openended.errors import UserError
from openended.sandbox import Limits
from openended.textfiles import read_text

logger = logging.getLogger(__name__)

BRANCH_NODES = (
    ast.If,
    ast.For,
    ast.While,
    ast.Try,
    ast.IfExp,
    ast.comprehension,
    ast.BoolOp,
    ast.Match,
)


class DescriptorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="'length', 'branches', or a metric the evaluator returns")
    low: float
    high: float
    bins: int = Field(10, ge=1)


class SandboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wall_seconds: float = Field(30.0, gt=0)
    cpu_seconds: float = Field(30.0, gt=0)
    memory_mb: int = Field(2048, ge=64)
    max_processes: int = Field(32, ge=1)
    isolation: str = Field("auto", pattern="^(auto|bwrap|rlimits|inprocess)$")

    def limits(self) -> Limits:
        """The sandbox limits of each evaluator stage."""
        return Limits(
            wall_seconds=self.wall_seconds,
            cpu_seconds=self.cpu_seconds,
            memory_mb=self.memory_mb,
            max_processes=self.max_processes,
        )


class ProgramConfig(BaseModel):
    """Options of the ``[domain]`` table for ``name = "program"``."""

    model_config = ConfigDict(extra="forbid")

    initial: Path = Field(description="the initial program")
    evaluator: Path = Field(description="file with evaluate(program_path) -> {'score': ...}")
    function: str | None = Field(None, description="evolve this function (else EVOLVE-BLOCK)")
    task: str | None = Field(None, description="what the program should do (for prompts)")
    workers: int = Field(2, ge=1, description="evaluations in parallel")
    cascade_thresholds: list[float] = Field(
        default_factory=list, description="minimum score per evaluate_stageN"
    )
    descriptors: list[DescriptorSpec] | None = Field(None, description="default: length, branches")
    fitness_floor: float | None = Field(None, description="QD offset (default: from the initial)")
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    refine: RefineSettings | None = Field(
        default_factory=RefineSettings,
        description="fit the declared parameters of valid children ([domain.refine]; none: off)",
    )


class DomainError(UserError, ValueError):
    """The program domain cannot start (bad initial program or evaluator)."""


def strip_code(text: str) -> str:
    """The code in a completion: the first fenced block if there is one, else the text."""
    fenced = re.search(r"```(?:python|py)?[^\n]*\n(.*?)(?:```|$)", text, re.DOTALL)
    return (fenced.group(1) if fenced else text).strip("\n")


def normalised_ast(code: str, *, ignore_parameters: bool = False) -> str | None:
    """A fingerprint that ignores formatting, comments, docstrings and local names (and,
    with `ignore_parameters`, the numbers of ``PARAMS = [...]``, which the refine stage
    fits: programs that differ only there are one structure)."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return None
    names: dict[str, str] = {}

    class Normalise(ast.NodeTransformer):
        def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return None
            return self.generic_visit(node)

        def visit_Module(self, node: ast.Module) -> ast.AST:
            if ignore_parameters:  # the numbers the refine stage fits are not structure
                for values in parameter_lists(node):
                    values.elts = [
                        ast.Constant(0.0) if numeric_value(e) is not None else e
                        for e in values.elts
                    ]
            return self.generic_visit(node)

        def visit_Name(self, node: ast.Name) -> ast.AST:
            if isinstance(node.ctx, ast.Store) or node.id in names:
                node.id = names.setdefault(node.id, f"v{len(names)}")
            return node

        def visit_arg(self, node: ast.arg) -> ast.AST:
            node.arg = names.setdefault(node.arg, f"v{len(names)}")
            node.annotation = None
            return node

    tree = Normalise().visit(tree)
    return hashlib.sha1(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


class ProgramDomain:
    """Evolve a region of a program; score the whole program with the user's evaluator.

    Fitness is the evaluator's ``score`` (higher is better), clipped below at the QD offset
    (`fitness_floor`: from the config, else the initial score minus max(1, |initial score|)).
    Descriptors by default are the region's length in characters and its number of
    branching constructs; any numeric metric the evaluator returns can be used instead.
    """

    name: ClassVar[str] = "program"
    Config: ClassVar[type[BaseModel]] = ProgramConfig
    default_operator_weights: dict[str, float] = {"diff": 0.6, "rewrite": 0.15, "funsearch": 0.25}  # noqa: RUF012

    def __init__(self, config: ProgramConfig, *, base_dir: Path | None = None) -> None:
        self.config = config
        source = read_text(config.initial, what="initial program", error=DomainError)
        try:
            self.region: Region = find_region(source, config.function)
        except RegionError as exc:
            raise RegionError(f"{config.initial}: {exc}") from None
        s = config.sandbox
        self.evaluator = ProgramEvaluator(
            config.evaluator,
            limits=s.limits(),
            workers=config.workers,
            thresholds=config.cascade_thresholds,
            isolation=s.isolation,
        )
        self._seed_evaluation, seed_outcome = asyncio.run(self._scored(self.region.initial))
        if not self._seed_evaluation.valid:
            self.evaluator.close()
            message = (
                f"the initial program {config.initial} fails its evaluator "
                f"{config.evaluator}: {self._seed_evaluation.feedback}"
            )
            trace = seed_outcome.traceback
            if trace:  # the evaluator's own frames, marked as such
                message = message.split("\n", 1)[0] + "\nthe evaluator's traceback:\n" + trace
            raise DomainError(message)
        self._fitted_seed: Evaluation | None = None
        if self.refines_parameters and not self.fits_parameters:
            logger.warning(
                "%s declares no %s list in the evolved region: the refine stage fits nothing "
                'until a child declares one (domain.refine.target = "floats" fits every '
                "float literal instead)",
                config.initial,
                PARAMETERS_NAME,
            )
        initial_score = float(self._seed_evaluation.fitness)  # type: ignore[arg-type]
        self.fitness_floor = (
            config.fitness_floor
            if config.fitness_floor is not None
            else initial_score - max(1.0, abs(initial_score))
        )
        if self.region.function is None:  # no named function: no FunSearch crossover
            self.default_operator_weights = {"diff": 0.8, "rewrite": 0.2}
        elif self.fits_parameters and returned_value(self.region.initial) is not None:
            # a weighted sum with PARAMS: terms from a menu, weights fitted (measured
            # in bench/programs.py, issue 35: the only operator whose children improve)
            self.default_operator_weights = {"menu": 1.0}

    @property
    def max_evaluations_per_child(self) -> int:
        """Evaluator calls one child may take: its evaluation and its refine budget."""
        refine = self.config.refine
        return 1 + refine.evaluations if refine is not None and refine.enabled else 1

    # -- the contract -----------------------------------------------------------------------

    @property
    def axes(self) -> tuple[Axis, ...]:
        specs = self.config.descriptors
        if specs is None:
            length = max(2000, 4 * len(self.region.initial))
            return (
                Axis("length", 0, length, 10, "characters in the evolved code"),
                Axis("branches", 0, 20, 10, "if/for/while/try/comprehension/boolean constructs"),
            )
        return tuple(Axis(d.name, d.low, d.high, d.bins) for d in specs)

    @property
    def prompt_dir(self) -> Path | None:
        return None

    @property
    def refines_parameters(self) -> bool:
        """Whether the refine stage fits children's ``PARAMS``."""
        refine = self.config.refine
        return refine is not None and refine.enabled and refine.target == "params"

    @functools.cached_property
    def fits_parameters(self) -> bool:
        """Whether children's ``PARAMS`` are fitted and the seed declares some (then the
        prompts say so)."""
        if not self.refines_parameters:
            return False
        program = self.region.assemble(self.region.initial)
        begin = len(self.region.prefix)
        return bool(declared_parameters(program, begin, len(program) - len(self.region.suffix)))

    def prompt_context(self) -> Mapping[str, Any]:
        task = (
            self.config.task
            or _docstring(self.config.evaluator)
            or ("Improve the program so that the evaluator gives it a higher score.")
        )
        if self.fits_parameters:  # LLM-SR's division of labour, told to the model
            task = (
                f"{task.rstrip()} The numbers in {PARAMETERS_NAME} are fitted by an optimiser "
                f"after you write the code (the programs shown hold fitted values): write the "
                f"structure, and use {PARAMETERS_NAME}[i] for any number worth tuning."
            )
        return {
            "description": task,
            "task": task,
            "language": "python",
            "function": self.region.function,
            "header": self.region.header,
            "program_prefix": self.region.prefix[-1500:],
        }

    def seeds(self) -> Sequence[str]:
        return [self.region.initial]

    def validate(self, genome: str) -> str | None:
        """Why the genome is not a valid region (None when it is)."""
        if not genome.strip():
            return "empty program"
        if self.region.function is not None and not re.search(
            rf"\bdef\s+{re.escape(self.region.function)}\s*\(", genome
        ):
            return f"the code does not define {self.region.function}()"
        try:
            ast.parse(self.region.assemble(genome))
        except SyntaxError as exc:
            return f"syntax error: line {exc.lineno}: {exc.msg}"
        return None

    def parse(self, completion: str) -> str | None:
        genome = strip_code(completion)
        if not genome.endswith("\n"):
            genome += "\n"
        return None if self.validate(genome) else genome

    def fingerprint(self, genome: str) -> str | None:
        key = normalised_ast(genome, ignore_parameters=self.refines_parameters)
        return key or hashlib.sha1(" ".join(genome.split()).encode()).hexdigest()

    async def _evaluate_one(self, genome: str) -> Evaluation:
        completed = complete_parameters(genome) if self.refines_parameters else genome
        evaluation, _ = await self._scored(completed)
        if completed != genome:  # stored as the genome; the model's text as proposed
            evaluation = dataclasses.replace(evaluation, genome=completed)
        refine = self.config.refine
        if refine is None or not refine.enabled or not evaluation.valid:
            return evaluation
        refined = await self.refine(completed, evaluation, refine)
        if refined.genome is None and completed != genome:
            refined = dataclasses.replace(refined, genome=completed)
        return refined

    async def refine(
        self, genome: str, evaluation: Evaluation, settings: RefineSettings
    ) -> Evaluation:
        """The child with its parameters fitted (see `openended.domains.program.refine`),
        or the child as proposed when fitting found nothing better; either way with the
        evaluator calls spent, the proposed and fitted values and the gain recorded."""
        program = self.region.assemble(genome)
        begin = len(self.region.prefix)
        end = len(program) - len(self.region.suffix)
        literals = tunable_numbers(program, begin, end, settings.target)
        literals = literals[: settings.max_literals]
        if not literals:
            return evaluation
        stage = self.evaluator.stages[0]
        cascade = len(self.evaluator.stages) > 1  # tuned on stage 1, then evaluated in full
        start_score = float(evaluation.metrics.get("score", evaluation.fitness))  # type: ignore[arg-type]
        outcomes: dict[tuple[float, ...], StageOutcome] = {}

        async def objective(values: tuple[float, ...]) -> float | None:
            outcome = await self.evaluator.run_stage(substitute(program, literals, values), stage)
            outcomes[values] = outcome
            return outcome.score

        result = await tune(
            [literal.value for literal in literals],
            objective,
            start_objective=None if cascade else start_score,
            settings=settings,
            budget=settings.evaluations - 1 if cascade else settings.evaluations,
            key=hashlib.sha256(genome.encode()).hexdigest(),
        )
        spent = len(result.trials)
        tuned: Evaluation | None = None
        if result.best is not None:
            text = substitute(program, literals, result.best.values)
            outcome = outcomes[result.best.values]
            if cascade:  # the best by the cheap stage, evaluated in full
                outcome = await self.evaluator.run(text)
                spent += 1
            if outcome.score is not None and outcome.score > start_score:
                tuned = self._evaluation(self._genome_of(text), outcome)
        gain = 0.0
        if tuned is not None and tuned.valid:
            gain = float(tuned.metrics.get("score", tuned.fitness)) - start_score  # type: ignore[arg-type]
        details = {
            **evaluation.details,
            "refine": {
                "method": settings.method,
                "target": settings.target,
                "literals": len(literals),
                "evaluations": spent,
                "gain": gain,
                "proposed_values": [literal.value for literal in literals],
                "fitted_values": [rounded(v) for v in result.best.values]
                if gain > 0 and result.best is not None
                else [literal.value for literal in literals],
            },
        }
        if tuned is None or gain <= 0:
            return dataclasses.replace(evaluation, details=details, evaluations=1 + spent)
        return dataclasses.replace(
            tuned, genome=self._genome_of(text), details=details, evaluations=1 + spent
        )

    def _genome_of(self, program: str) -> str:
        return program[len(self.region.prefix) : len(program) - len(self.region.suffix)]

    async def _scored(self, genome: str) -> tuple[Evaluation, StageOutcome]:
        """The genome's evaluation and the evaluator's raw outcome."""
        outcome = await self.evaluator.run(self.region.assemble(genome))
        return self._evaluation(genome, outcome), outcome

    def _evaluation(self, genome: str, outcome: StageOutcome) -> Evaluation:
        metrics = dict(outcome.metrics)
        if outcome.score is None:
            return Evaluation.invalid(outcome.error or "invalid", **metrics)
        descriptors = []
        for axis in self.axes:
            if axis.name == "length" and axis.name not in metrics:
                value = float(len(genome))
            elif axis.name == "branches" and axis.name not in metrics:
                value = float(_branches(genome))
            elif axis.name in metrics:
                value = metrics[axis.name]
            else:
                return Evaluation.invalid(
                    f"the evaluator returned no metric {axis.name!r} (a descriptor axis)", **metrics
                )
            descriptors.append(value)
        # fitness is the score clipped at the floor (the QD offset), so that every elite adds
        # to the QD-score; the raw score stays in the metrics
        floor = getattr(self, "fitness_floor", None)
        fitness = outcome.score if floor is None else max(outcome.score, floor)
        return Evaluation(fitness=fitness, descriptors=tuple(descriptors), metrics=metrics)

    @property
    def seed_evaluation(self) -> Evaluation:
        """The initial program's evaluation as written (before any fitting)."""
        return self._seed_evaluation

    async def _seed_fitted(self) -> Evaluation:
        """The seed with its parameters fitted once (it declares PARAMS; the refine stage is
        on), else as evaluated: the programs the first prompts show hold fitted values."""
        if self._fitted_seed is None:
            refine = self.config.refine
            evaluation = self._seed_evaluation
            if refine is not None and refine.enabled:
                evaluation = await self.refine(self.region.initial, evaluation, refine.for_seed())
            self._fitted_seed = evaluation
        return self._fitted_seed

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        results = []
        for genome in genomes:
            if genome.strip() == self.region.initial.strip():
                results.append(await self._seed_fitted())
            else:
                results.append(None)
        pending = [i for i, r in enumerate(results) if r is None]
        fresh = await asyncio.gather(*(self._evaluate_one(genomes[i]) for i in pending))
        for i, evaluation in zip(pending, fresh, strict=True):
            results[i] = evaluation
        return results  # type: ignore[return-value]

    def sandbox_info(self) -> Mapping[str, Any]:
        return self.evaluator.sandbox.info

    def close(self) -> None:
        self.evaluator.close()


def _branches(code: str) -> int:
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return 0
    return sum(isinstance(n, BRANCH_NODES) for n in ast.walk(tree))


def _docstring(path: Path) -> str | None:
    try:
        return ast.get_docstring(ast.parse(read_text(path)))
    except (UserError, SyntaxError):
        return None
