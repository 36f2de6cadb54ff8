"""Search budgets: LM calls, tokens, evaluations and wall time, over all sessions of a run."""

from __future__ import annotations

from dataclasses import dataclass

from openended.config import BudgetConfig


@dataclass
class Usage:
    """What a run has used so far (committed work only)."""

    evaluations: int = 0
    candidates: int = 0
    valid: int = 0
    children: int = 0
    valid_children: int = 0
    lm_calls: int = 0
    tokens: int = 0
    elapsed: float = 0.0


class Budget:
    """Decides whether another batch may start and how large it may be."""

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config

    def batch_size(
        self,
        wanted: int,
        *,
        usage: Usage,
        pending_evaluations: int,
        pending_tokens: int,
        pending_calls: int,
        elapsed: float,
        evaluations_per_child: int = 1,
    ) -> tuple[int, str | None]:
        """How many children the next batch may have (0: none), and if 0, which budget
        is spent. `pending_*` count work already started but not yet committed.
        `evaluations_per_child` is the most evaluator calls one child may take (a refine
        stage's); the last batch is sized so that the evaluation budget is exceeded by less
        than one child's share."""
        c = self.config
        if c.max_seconds and elapsed >= c.max_seconds:
            return 0, f"wall time ({c.max_seconds:g} s)"
        if c.max_lm_calls and usage.lm_calls + pending_calls >= c.max_lm_calls:
            return 0, f"LM calls ({c.max_lm_calls})"
        if c.max_tokens and usage.tokens + pending_tokens >= c.max_tokens:
            return 0, f"tokens ({c.max_tokens})"
        size = wanted
        if c.max_evaluations:
            left = c.max_evaluations - usage.evaluations - pending_evaluations
            if left <= 0:
                return 0, f"evaluations ({c.max_evaluations})"
            size = min(size, -(-left // max(1, evaluations_per_child)))
            if size <= 0:
                return 0, f"evaluations ({c.max_evaluations})"
        return size, None
