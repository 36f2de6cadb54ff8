"""Operator weights that follow each operator's measured yield.

ShinkaEvolve (Lange et al. 2025, arXiv 2509.19349) samples its mutation models with a bandit
over the fitness gains their children bring; here the arms are the variation operators and
the reward of a child is 1 when it is valid plus 1 when it entered the archive (a new cell or
a better elite: the MAP-Elites sense of improving). An operator's yield is its reward per
token (prompt and completion), smoothed towards the pooled yield of all operators by a prior
of `prior` children, so that an operator with few children keeps its configured share; its
weight is its configured weight times its yield, and every operator keeps at least `floor`
of the draws so that a yield can recover.

The weights of batch b depend only on the batches the archive holds when batch b selects its
parents (0..b-2, see `openended.engine.search`): they are the same in a resumed run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from openended.store.run_store import CandidateRecord, Status


@dataclass
class OperatorYield:
    """What one operator's committed children brought."""

    children: int = 0
    valid: int = 0
    improving: int = 0
    tokens: int = 0

    @property
    def reward(self) -> int:
        return self.valid + self.improving


class OperatorBandit:
    """Weights over `names`, starting from `base` (the configured weights)."""

    def __init__(
        self,
        names: Sequence[str],
        base: Sequence[float],
        *,
        adapt: bool = True,
        floor: float = 0.05,
        prior: float = 16.0,
    ) -> None:
        self.names = list(names)
        total = float(sum(base))
        self.base = np.array([b / total for b in base], dtype=np.float64)
        self.adapt = adapt
        self.floor = min(floor, 1.0 / len(self.names))
        self.prior = prior
        self.stats = {name: OperatorYield() for name in self.names}

    def observe(self, records: Iterable[CandidateRecord]) -> None:
        """Count committed children (after they were offered to the archive)."""
        for record in records:
            stats = self.stats.get(record.operator)
            if stats is None:  # seeds, or an operator this run no longer uses
                continue
            stats.children += 1
            stats.valid += record.status == Status.VALID
            stats.improving += bool(record.status == Status.VALID and record.added)
            stats.tokens += record.prompt_tokens + record.completion_tokens

    def weights(self) -> np.ndarray:
        """The probability of drawing each operator for the next batch."""
        if not self.adapt or len(self.names) == 1:
            return self.base
        all_children = sum(s.children for s in self.stats.values())
        if all_children == 0:
            return self.base
        pooled_reward = sum(s.reward for s in self.stats.values()) / all_children
        pooled_tokens = max(1.0, sum(s.tokens for s in self.stats.values()) / all_children)
        yields = np.array(
            [
                (s.reward + self.prior * pooled_reward) / (s.tokens + self.prior * pooled_tokens)
                for s in self.stats.values()
            ]
        )
        raw = self.base * yields
        if raw.sum() <= 0:
            return self.base
        raw /= raw.sum()
        return self.floor + (1.0 - self.floor * len(raw)) * raw

    def state(self) -> dict[str, dict[str, float]]:
        """Per operator: children, valid, improving, tokens and the current weight (stored
        with every batch, so that a run shows how its budget was spent)."""
        weights = self.weights()
        return {
            name: {**stats.__dict__, "weight": round(float(weight), 4)}
            for (name, stats), weight in zip(self.stats.items(), weights, strict=True)
        }
