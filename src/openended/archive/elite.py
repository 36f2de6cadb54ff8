"""An archive member as seen by operators and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Elite:
    """A genome in the archive, with the id of the candidate that put it there."""

    candidate_id: int
    genome: str
    fitness: float
    descriptors: tuple[float, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    feedback: str | None = None
