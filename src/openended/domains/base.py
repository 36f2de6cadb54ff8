"""The `Domain` contract: what is searched, how it is parsed, scored and described."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel


@dataclass(frozen=True)
class Axis:
    """One descriptor dimension: a name, a range and a number of bins."""

    name: str
    low: float
    high: float
    bins: int
    description: str = ""

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"axis {self.name!r}: high ({self.high}) must exceed low ({self.low})")
        if self.bins < 1:
            raise ValueError(f"axis {self.name!r}: bins must be >= 1, got {self.bins}")


@dataclass(frozen=True)
class Evaluation:
    """The score of one genome. `fitness is None` means invalid; `feedback` says why."""

    fitness: float | None
    descriptors: tuple[float, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    feedback: str | None = None
    genome: str | None = None
    """The genome this evaluation is for, when the domain changed what was proposed (a
    formula with its constants fitted, a program with its literals tuned): the archive and
    the store keep this one, and the proposed one as `CandidateRecord.proposed`."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """JSON values beyond the metrics, stored with the candidate (fitted constants, ...)."""
    evaluations: int = 1
    """Evaluator calls this evaluation took (a refine stage's are counted by the budget)."""

    @property
    def valid(self) -> bool:
        return self.fitness is not None

    @classmethod
    def invalid(cls, feedback: str, **metrics: float) -> Evaluation:
        return cls(fitness=None, feedback=feedback, metrics=metrics)


@runtime_checkable
class Domain(Protocol):
    """A search domain. Implementations also define `Config`, a pydantic model of their
    options (the ``[domain]`` table less ``name``), and take it in their constructor:
    ``Domain(config, base_dir=...)`` where relative paths in the config resolve
    against `base_dir`."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    axes: Sequence[Axis]
    fitness_floor: float
    """The lowest fitness the domain gives; the QD-score offset."""
    default_operator_weights: ClassVar[dict[str, float]]
    """Operator weights used when the config leaves them unset."""

    def seeds(self) -> Sequence[str]: ...

    def parse(self, completion: str) -> str | None: ...

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]: ...

    def prompt_context(self) -> Mapping[str, Any]:
        """Values the prompt templates may use (task description, variable names, ...)."""
        ...

    # Optional:
    # - ``fingerprint(genome) -> str | None`` for near-duplicate rejection;
    # - ``operator_sampling: dict[str, dict]``: per operator, default ``max_tokens`` and
    #   ``stop`` for this domain's genomes (the config's values still win);
    # - ``use_language_model(lm)``: called with the run's model before the search starts,
    #   for domains whose evaluation asks the model (e.g. a solver's success rate);
    # - ``max_evaluations_per_child: int``: the most evaluator calls one child may take
    #   (a refine stage's), so that budgets plan batches (default 1);
    # - ``close()``: release resources (sandboxes) at the end of a run.

    @property
    def prompt_dir(self) -> Path | None:
        """A folder of `<operator>.jinja` templates overriding the operators' defaults."""
        ...


@runtime_checkable
class SandboxedDomain(Protocol):
    """A domain that runs candidates in a sandbox; the run records how it was isolated."""

    def sandbox_info(self) -> Mapping[str, Any]:
        """``isolation`` (bwrap | rlimits | inprocess), ``seccomp``, ``scratch``, ..."""
        ...
