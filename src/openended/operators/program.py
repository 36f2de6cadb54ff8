"""Operators for program evolution: SEARCH/REPLACE diffs, full rewrites, and FunSearch's
crossover (Romera-Paredes et al. 2024: versions ``priority_v0 .. v(k-1)`` sorted by score,
then the header of ``priority_vk`` for the model to complete)."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from openended.archive.elite import Elite
from openended.domains.program.diff import DiffError, apply_blocks, parse_blocks
from openended.domains.program.region import ProgramDomain
from openended.operators.base import Operator, OperatorDomainError, Parsed, pick_one, pick_sorted

SEARCH_MARKER = "<<<<<<< SEARCH"
FUNCTION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\n```", "\n@", "\n#")


def trim_function_body(header: str, completion: str) -> str | None:
    """FunSearch's trimming: keep the completion up to the first line that is not
    indented, then drop trailing lines until ``header + body`` parses."""
    lines = completion.split("\n")
    body: list[str] = []
    for index, line in enumerate(lines):
        if index > 0 and line.strip() and not line[:1].isspace():
            break
        body.append(line)
    while body:
        text = header + "\n".join(body)
        try:
            ast.parse(text)
            return "\n".join(body).rstrip() + "\n"
        except SyntaxError:
            body.pop()
    return None


def metrics_line(elite: Elite, *, most: int = 6) -> str:
    """The evaluator's metrics of `elite` other than its score, for a prompt
    (``weibull_excess_pct 4.96, uniform_excess_pct 5.41``; '' when there are none)."""
    shown = [(k, v) for k, v in elite.metrics.items() if k != "score"][:most]
    return ", ".join(f"{k} {v:.4g}" for k, v in shown)


class ProgramOperator(Operator):
    """An operator that edits a program region: its domain must be a `ProgramDomain`."""

    domain: ProgramDomain

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(self.domain, ProgramDomain):
            raise OperatorDomainError(
                f"operator {self.name!r} edits programs: it needs a domain with a program "
                f"region (the 'program' domain), not {type(self.domain).__name__}"
            )


class DiffMutation(ProgramOperator):
    """Ask for SEARCH/REPLACE edits of one parent; the prompt ends with the SEARCH marker
    so that even small models start in the format."""

    name: ClassVar[str] = "diff"
    copies_parent: ClassVar[bool] = True
    default_stop: ClassVar[tuple[str, ...]] = ()
    default_max_tokens: ClassVar[int] = 384

    def extra_context(self, parents: Sequence[Elite]) -> dict[str, Any]:
        """An example edit built from a real line of the parent (the longest code line), so
        the model sees the format applied to this program."""
        lines = [
            line
            for line in parents[0].genome.splitlines()
            if line.strip() and not line.strip().startswith(("#", '"""', "def "))
        ]
        return {
            "example": max(lines, key=len) if lines else "pass",
            "metrics": metrics_line(parents[0]),
        }

    def parse(self, completion: str, parents: Sequence[Elite]) -> Parsed:
        text = completion
        if "SEARCH" not in completion.split("\n", 1)[0]:  # the prompt ended with the marker
            text = SEARCH_MARKER + ("" if completion.startswith("\n") else "\n") + completion
        try:
            genome = apply_blocks(parents[0].genome, parse_blocks(text))
        except DiffError as exc:
            return Parsed.failed(str(exc), exc.status)
        if genome.strip() == parents[0].genome.strip():
            return Parsed.failed("the diff changes nothing")
        problem = self.domain.validate(genome)
        return Parsed.failed(problem) if problem else Parsed(genome)


class FullRewrite(ProgramOperator):
    """Ask for the whole region again. For a named function the prompt ends with its
    header and docstring and the model writes the body."""

    name: ClassVar[str] = "rewrite"
    copies_parent: ClassVar[bool] = True
    default_stop: ClassVar[tuple[str, ...]] = ("\n```",)
    default_max_tokens: ClassVar[int] = 384

    def select_parents(self, elites: list[Elite], rng: np.random.Generator) -> list[Elite]:
        """The parent, and another elite to show as already found (the prompt asks for a
        version unlike both, so that the model does not write the archive again)."""
        parent = pick_one(elites, rng)
        others = [e for e in elites if e.genome.strip() != parent.genome.strip()]
        if not others:
            return [parent]
        return [parent, pick_one(others, rng)]

    def extra_context(self, parents: Sequence[Elite]) -> dict[str, Any]:
        return {
            "header": self.domain.region.header,
            "found": list(parents[1:]),
            "metrics": metrics_line(parents[0]),
        }

    def parse(self, completion: str, parents: Sequence[Elite]) -> Parsed:
        region = self.domain.region
        if region.function is not None:
            body = trim_function_body(region.header, completion)
            if body is None:
                return Parsed.failed(f"no valid function body in {completion.strip()[:120]!r}")
            genome = region.header + body
        else:
            genome = completion.split("```", 1)[0].rstrip() + "\n"
        problem = self.domain.validate(genome)
        return Parsed.failed(problem) if problem else Parsed(genome)


class FunSearchCrossover(ProgramOperator):
    """`parents` versions of the function, renamed ``<name>_v0 ..`` in increasing score,
    then the header of the next version; the completion is its body."""

    name: ClassVar[str] = "funsearch"
    default_parents: ClassVar[int] = 2
    default_stop: ClassVar[tuple[str, ...]] = FUNCTION_STOPS
    default_max_tokens: ClassVar[int] = 320

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.domain.region.function is None:
            raise ValueError(
                "funsearch crossover needs a named function to evolve (domain.function, or an "
                "EVOLVE-BLOCK holding exactly one function); set operators.funsearch.weight = 0"
            )

    def select_parents(self, elites: list[Elite], rng: np.random.Generator) -> list[Elite]:
        return pick_sorted(elites, self.parents, rng)

    def extra_context(self, parents: Sequence[Elite]) -> dict[str, Any]:
        region = self.domain.region
        name = region.function
        versions = [region.rename(p.genome, f"{name}_v{i}").rstrip() for i, p in enumerate(parents)]
        k = len(parents)
        header = region.header_for(f"{name}_v{k}")
        return {
            "versions": versions,
            "next_header": header,
            "next_name": f"{name}_v{k}",
            "previous_name": f"{name}_v{k - 1}",
        }

    def parse(self, completion: str, parents: Sequence[Elite]) -> Parsed:
        region = self.domain.region
        body = trim_function_body(region.header, completion)
        if body is None:
            return Parsed.failed(f"no valid function body in {completion.strip()[:120]!r}")
        genome = region.header + body
        problem = self.domain.validate(genome)
        return Parsed.failed(problem) if problem else Parsed(genome)
