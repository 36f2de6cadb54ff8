"""The evolved function as a weighted sum: its final ``return <value>``, the value's terms
without their ``PARAMS[i]`` weights, and the function's variables. The `term` and `menu`
operators add terms to such a function, and the program domain makes `menu` its default
operator where the seed is one (FunSearch's priority functions are; Romera-Paredes et al.
2024)."""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass

from openended.domains.program.refine import PARAMETERS_NAME, node_span, parameter_lists

_LOOSE_BINDING = (ast.BoolOp, ast.Compare, ast.IfExp, ast.Lambda, ast.NamedExpr)
_BITWISE = (ast.BitOr, ast.BitAnd, ast.BitXor, ast.LShift, ast.RShift)


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
        terms=tuple(ast.unparse(t) for t in unweighted(_addends(value))),
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


def unweighted(terms: list[ast.expr]) -> list[ast.expr]:
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
