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
import functools
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from openended.archive.elite import Elite
from openended.domains.program.refine import PARAMETERS_NAME, node_span, parameter_lists
from openended.operators.base import Parsed, pick_one
from openended.operators.program import ProgramOperator, metrics_line

_LOOSE_BINDING = (ast.BoolOp, ast.Compare, ast.IfExp, ast.Lambda, ast.NamedExpr)
_BITWISE = (ast.BitOr, ast.BitAnd, ast.BitXor, ast.LShift, ast.RShift)


class TermNotApplicableError(ValueError):
    """The evolved region is not a function that returns one value and declares PARAMS."""


@dataclass(frozen=True)
class ReturnedValue:
    """The final ``return`` of the evolved function: its value's text and span (character
    offsets in the genome), the function's variable names and its parameter count."""

    text: str
    start: int
    end: int
    names: tuple[str, ...]
    parameters: int
    terms: tuple[str, ...]
    """The value's addends, without their ``PARAMS[i] *`` weights."""
    loose: bool
    """The value binds more loosely than ``+`` (it needs brackets before a term is added)."""


@functools.lru_cache(maxsize=1024)
def returned_value(genome: str) -> ReturnedValue | None:
    """The evolved function's final return (None: the genome is not one function ending in
    ``return <value>``, the value is a tuple, or the function declares no PARAMS list).
    Cached: a request asks it of every elite (parent selection), then of the parent
    twice (prompt, parse)."""
    try:
        tree = ast.parse(textwrap.dedent(genome))
    except SyntaxError:
        return None
    if genome != textwrap.dedent(genome):  # offsets below are in the genome's own text
        return None
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(functions) != 1:
        return None
    function = functions[0]
    last = function.body[-1]
    if not isinstance(last, ast.Return) or last.value is None or isinstance(last.value, ast.Tuple):
        return None
    lists = parameter_lists(function)
    if len(lists) != 1:
        return None
    value = last.value
    start, end = node_span(genome, value)
    names = [a.arg for a in function.args.args + function.args.kwonlyargs]
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
    unique = tuple(dict.fromkeys(n for n in names if n != PARAMETERS_NAME))
    loose = isinstance(value, _LOOSE_BINDING) or (
        isinstance(value, ast.BinOp) and isinstance(value.op, _BITWISE)
    )
    return ReturnedValue(
        text=genome[start:end],
        start=start,
        end=end,
        names=unique,
        parameters=len(lists[0].elts),
        terms=tuple(ast.unparse(t) for t in _unweighted(_addends(value))),
        loose=loose,
    )


def _addends(node: ast.expr) -> list[ast.expr]:
    """The terms of a sum (``a + b - c``: a, b, c), or the expression itself."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        return _addends(node.left) + _addends(node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _addends(node.operand)
    return [node]


def _is_parameter(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == PARAMETERS_NAME
    )


def _factors(node: ast.expr) -> list[ast.expr]:
    """The factors of a product (``a * b * c``: a, b, c), or the expression itself."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    return [node]


def _unweighted(terms: list[ast.expr]) -> list[ast.expr]:
    """Each term without its ``PARAMS[i]`` factors; distinct, in order (constants and bare
    weights are not terms)."""
    out: dict[str, ast.expr] = {}
    for term in terms:
        factors = [f for f in _factors(term) if not _is_parameter(f)]
        if not factors or all(isinstance(f, ast.Constant) for f in factors):
            continue
        kept = factors[0]
        for factor in factors[1:]:
            kept = ast.BinOp(left=kept, op=ast.Mult(), right=factor)
        out.setdefault(ast.dump(kept), kept)
    return list(out.values())


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
    unweighted = _unweighted([expression])
    if not unweighted:
        return None, f"the term is a weight, not a term: {line[:120]!r}"
    term = ast.unparse(unweighted[0])
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
