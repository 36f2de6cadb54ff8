"""Operators for text: Evol-Instruct mutations (Xu et al. 2023, arXiv 2304.12244) and
archive-aware prompting that shows a parent's nearest archive members and asks for
something unlike them (in the spirit of QDAIF's diversity prompts, Bradley et al. 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from openended.archive.elite import Elite
from openended.lm.base import GenerationRequest
from openended.operators.base import Operator, pick_one

EVOLUTIONS: dict[str, str] = {
    "add_constraints": "Add one more constraint or requirement to it.",
    "deepen": "Make it ask about the topic in more depth.",
    "concretise": "Replace general ideas in it with more specific, concrete ones.",
    "more_reasoning": "Rewrite it so that it needs more steps of reasoning.",
    "new_topic": "Write a new one on a different topic, of the same kind and difficulty.",
}
"""Evol-Instruct's in-depth evolutions (constraints, deepening, concretising, reasoning
steps) and its in-breadth evolution (a new topic)."""


class EvolMutation(Operator):
    """Rewrite one parent with one evolution instruction, chosen by the request's seed."""

    name: ClassVar[str] = "evol"
    default_stop: ClassVar[tuple[str, ...]] = ("\n\n",)
    default_max_tokens: ClassVar[int] = 128

    def request(self, parents: Sequence[Elite], *, seed: int) -> GenerationRequest:
        self._evolution = list(EVOLUTIONS)[seed % len(EVOLUTIONS)]
        return super().request(parents, seed=seed)

    def extra_context(self, parents: Sequence[Elite]) -> dict[str, Any]:
        kind = getattr(self, "_evolution", "add_constraints")
        return {"evolution": kind, "instruction": EVOLUTIONS[kind]}


class ContrastPrompt(Operator):
    """Show a random parent and its `parents - 1` nearest archive members (by descriptor
    distance) and ask for one unlike all of them."""

    name: ClassVar[str] = "contrast"
    default_parents: ClassVar[int] = 4
    default_stop: ClassVar[tuple[str, ...]] = ("\n",)
    default_max_tokens: ClassVar[int] = 96

    def select_parents(self, elites: list[Elite], rng: np.random.Generator) -> list[Elite]:
        anchor = pick_one(elites, rng)
        if not anchor.descriptors:
            return [anchor]
        point = np.array(anchor.descriptors)
        others = [e for e in elites if e.candidate_id != anchor.candidate_id]
        others.sort(key=lambda e: float(np.linalg.norm(np.array(e.descriptors) - point)))
        return [anchor, *others[: self.parents - 1]]
