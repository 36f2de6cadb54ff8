"""The `Domain` contract: what is searched, how it is parsed, scored and described."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    from openended.lm.base import LanguageModel


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

    # Optional members: the protocols below (checked with isinstance).

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


@runtime_checkable
class FingerprintingDomain(Protocol):
    """A domain that recognises near-duplicates: children whose fingerprint is already
    in the archive are not evaluated again."""

    def fingerprint(self, genome: str) -> str | None:
        """A key equal for genomes that are the same solution (None: no key)."""
        ...


@runtime_checkable
class SamplingDefaultsDomain(Protocol):
    """A domain with its own sampling defaults per operator (the config's values win)."""

    operator_sampling: Mapping[str, Mapping[str, Any]]
    """Per operator name: default ``max_tokens`` and ``stop`` for this domain's genomes."""


@runtime_checkable
class ModelUsingDomain(Protocol):
    """A domain whose evaluation asks the run's language model (a judge, a solver)."""

    def use_language_model(self, lm: LanguageModel) -> None:
        """Called with the run's model before the search starts."""
        ...


@runtime_checkable
class RefiningDomain(Protocol):
    """A domain whose evaluation of one child may call the evaluator more than once (a
    refine stage), so that budgets plan batches."""

    max_evaluations_per_child: int


@runtime_checkable
class ClosableDomain(Protocol):
    """A domain holding resources (sandboxes) to release at the end of a run."""

    def close(self) -> None: ...


def operator_sampling(domain: object) -> Mapping[str, Mapping[str, Any]]:
    """The domain's sampling defaults per operator ({} when it has none)."""
    return domain.operator_sampling if isinstance(domain, SamplingDefaultsDomain) else {}


def evaluations_per_child(domain: object) -> int:
    """The most evaluator calls one child may take (1 unless the domain refines)."""
    return int(domain.max_evaluations_per_child) if isinstance(domain, RefiningDomain) else 1
