"""Language model crossover (LMX; Meyerson et al. 2023, arXiv 2302.12170).

A few-shot prompt lists k archive members; the model's continuation of the list is the
child. Parents are shown worst to best, so the list reads as a progression.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from openended.archive.elite import Elite
from openended.operators.base import Operator, pick_sorted


class LMXCrossover(Operator):
    """LMX with `parents` distinct archive members per prompt."""

    name: ClassVar[str] = "lmx"
    default_parents: ClassVar[int] = 4

    def select_parents(self, elites: list[Elite], rng: np.random.Generator) -> list[Elite]:
        return pick_sorted(elites, self.parents, rng)
