"""The executor seam: an `Evaluator` scores genomes for the search engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from openended.domains.base import Domain, Evaluation
from openended.errors import InfrastructureError

if TYPE_CHECKING:
    pass


class ExecutorError(InfrastructureError):
    """The executor could not evaluate (a cluster lost, retries exhausted): the run stops,
    to be resumed, instead of recording the genomes as invalid."""


class Evaluator(Protocol):
    """Scores a batch of genomes, in order (an invalid genome gets an invalid
    `Evaluation`, not an exception)."""

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]: ...

    def close(self) -> None: ...


class LocalEvaluator:
    """The domain's own `evaluate`, in this process (its sandbox pool)."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        return list(await self.domain.evaluate(genomes))  # type: ignore[misc]

    def close(self) -> None:
        """Nothing to release: the domain is closed by whoever made it."""
