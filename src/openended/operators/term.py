"""Add one weighted term to the value a function returns: the model writes the term's
expression, the refine stage fits its weight (and the others).

This is the division of labour that made symbolic regression work here, carried over to
programs: LLM-SR (Shojaee et al. 2024) has the model propose the structure of an equation
and an optimiser fit its parameters; FunSearch's priority functions (Romera-Paredes et al.
2024) are sums of such terms. A small model is far more reliable at one expression over named
variables than at a whole function, and a child that starts with its new weight at zero is
its parent exactly, so the optimiser can only keep or improve on the parent's training score.

The operator applies where the evolved function ends in ``return <value>`` (not a tuple) and
declares ``PARAMS = [...]``, which the refine stage fits (`openended.domains.program.refine`).
The child is the parent with ``return <value> + PARAMS[k] * (<term>)``; the list is padded
with a zero for ``PARAMS[k]`` before evaluation (`complete_parameters`).
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from openended.archive.elite import Elite
from openended.domains.program.refine import PARAMETERS_NAME
from openended.domains.program.weighted_sum import (
    ReturnedValue,
    returned_value,
    unweighted,
)
from openended.operators.base import Parsed, pick_one
from openended.operators.program import ProgramOperator, metrics_line


class TermNotApplicableError(ValueError):
    """The evolved region is not a function that returns one value and declares PARAMS."""


def parse_term(
    completion: str, names: Sequence[str], terms: Sequence[str] = ()
) -> tuple[str | None, str | None]:
    """The expression in a completion's first line, or why there is none: it must parse as
    one expression, read at least one of the function's variables `names`, and not be one
    of its `terms` already (a near-copy of the parent)."""
    line = completion.strip().split("\n", 1)[0]
    line = line.split("  #", 1)[0].split(" # ", 1)[0].strip().rstrip(";,").strip()
    if not line:
        return None, "an empty term"
    try:
        expression = ast.parse(line, mode="eval").body
    except SyntaxError:
        return None, f"the term is not a Python expression: {line[:120]!r}"
    if isinstance(expression, ast.Tuple):
        return None, f"the term is a tuple, not a number: {line[:120]!r}"
    read = {n.id for n in ast.walk(expression) if isinstance(n, ast.Name)}
    unknown = sorted(read - set(names) - {"np", "math", PARAMETERS_NAME} - set(dir(builtins)))
    if unknown:
        return None, f"the term reads undefined names {', '.join(unknown)}: {line[:120]!r}"
    if not read & set(names):
        return None, f"the term reads none of the function's variables: {line[:120]!r}"
    found = unweighted([expression])
    if not found:
        return None, f"the term is a weight, not a term: {line[:120]!r}"
    term = ast.unparse(found[0])
    if term in terms:
        return None, f"the function has this term already: {line[:120]!r}"
    return term, None


def add_term(genome: str, returned: ReturnedValue, term: str) -> str:
    """`genome` whose return value gains ``+ PARAMS[k] * (term)``, k the next parameter."""
    value = f"({returned.text})" if returned.loose else returned.text
    weight = f"{PARAMETERS_NAME}[{returned.parameters}]"
    return genome[: returned.start] + f"{value} + {weight} * ({term})" + genome[returned.end :]


class TermAddition(ProgramOperator):
    """One parent; the prompt shows it (with fitted parameters), then its terms as the
    start of a Python list (``terms = [`` ...), which the model continues with one more:
    small models continue a list more reliably than they follow an instruction. On bin
    packing's seed, of 32 completions of the embedded model, a new expression of the
    function's variables came 4 times after an instruction ending in ``new_term =`` (most
    were constants or read ``new_term`` itself), 5 times after this list (9 at temperature
    0.6)."""

    name: ClassVar[str] = "term"
    default_stop: ClassVar[tuple[str, ...]] = ("\n",)
    default_max_tokens: ClassVar[int] = 48

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not applies_to(self.domain):
            raise TermNotApplicableError(
                "the term operator needs an evolved function that ends in `return <value>` "
                f"and declares {PARAMETERS_NAME} = [...] with the refine stage on "
                f"(target = 'params'); set operators.{self.name}.weight = 0"
            )

    def select_parents(self, elites: list[Elite], rng: np.random.Generator) -> list[Elite]:
        """One elite, uniformly, among those that still end in ``return <value>`` with
        PARAMS (children of the other operators may not)."""
        extendable = [e for e in elites if returned_value(e.genome) is not None]
        return [pick_one(extendable or elites, rng)]

    def extra_context(self, parents: Sequence[Elite]) -> dict[str, Any]:
        returned = returned_value(parents[0].genome)
        return {
            "returned": returned.text if returned else "",
            "names": ", ".join(returned.names) if returned else "",
            "terms": list(returned.terms) if returned else [],
            "weight": f"{PARAMETERS_NAME}[{returned.parameters if returned else 0}]",
            "metrics": metrics_line(parents[0]),
            "function": self.domain.region.function,
        }

    def parse(self, completion: str, parents: Sequence[Elite]) -> Parsed:
        returned = returned_value(parents[0].genome)
        if returned is None:
            return Parsed.failed("the parent does not end in `return <value>` with PARAMS")
        term, problem = parse_term(completion, returned.names, returned.terms)
        if term is None:
            return Parsed.failed(problem or "no term")
        genome = add_term(parents[0].genome, returned, term)
        problem = self.domain.validate(genome)
        return Parsed.failed(problem) if problem else Parsed(genome)


def applies_to(domain: Any) -> bool:
    """Whether the term operator can work on `domain`'s seed: a program domain whose refine
    stage fits PARAMS and whose evolved function ends in ``return <value>``."""
    return bool(getattr(domain, "fits_parameters", False)) and (
        returned_value(domain.region.initial) is not None
    )
