"""Model-free structural mutation of an evolved region: random edits of its syntax tree, as
in genetic programming (Koza 1992), the baseline a language model must beat.

One edit per call, chosen uniformly among those the code allows:

- perturb a number (floats times a log-normal factor, integers by ±1, signs flip rarely);
- swap a binary operator (``+ -``, ``* /``) or a comparison (``< <= > >=``);
- replace a variable read by another name read in the same region;
- wrap an expression: ``x * c``, ``x + c``, ``-x``, ``x ** 2`` (``c`` a new number);
- delete a statement from a body of two or more (never the last ``return``);
- duplicate a statement in place (material for later edits, as GP's bloat).

The result is the region unparsed (comments are lost; docstrings kept) or None when no edit
applies or the edit does not parse.
"""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable

import numpy as np

SWAPS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub,),
    ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div,),
    ast.Div: (ast.Mult,),
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
}


def _numbers(tree: ast.AST) -> list[ast.Constant]:
    return [
        n for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) in (int, float)
    ]


def _perturb(tree: ast.AST, rng: np.random.Generator) -> bool:
    numbers = _numbers(tree)
    if not numbers:
        return False
    node = numbers[int(rng.integers(len(numbers)))]
    if isinstance(node.value, int):
        node.value = int(node.value + rng.choice([-1, 1]))
    else:
        value = node.value if node.value != 0 else float(rng.normal(0, 0.1))
        factor = float(np.exp(rng.normal(0, 0.5)))
        sign = -1.0 if rng.random() < 0.1 else 1.0
        node.value = float(f"{sign * value * factor:.6g}")
    return True


def _swap(tree: ast.AST, rng: np.random.Generator) -> bool:
    sites: list[tuple[ast.AST, int | None]] = []  # (node, index of a comparison's operator)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in SWAPS:
            sites.append((node, None))
        elif isinstance(node, ast.Compare):
            sites += [(node, i) for i, op in enumerate(node.ops) if type(op) in SWAPS]
    if not sites:
        return False
    node, index = sites[int(rng.integers(len(sites)))]
    if index is None:
        options = SWAPS[type(node.op)]  # type: ignore[attr-defined]
        node.op = options[int(rng.integers(len(options)))]()  # type: ignore[attr-defined]
    else:
        ops = node.ops  # type: ignore[attr-defined]
        options = SWAPS[type(ops[index])]
        ops[index] = options[int(rng.integers(len(options)))]()
    return True


def _rename(tree: ast.AST, rng: np.random.Generator) -> bool:
    reads = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    names = sorted({n.id for n in reads})
    if len(names) < 2:
        return False
    node = reads[int(rng.integers(len(reads)))]
    others = [name for name in names if name != node.id]
    node.id = others[int(rng.integers(len(others)))]
    return True


def _expressions(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """(parent, field) of expressions that may be wrapped: operands and returned values."""
    sites: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            sites += [(node, "left"), (node, "right")]
        elif isinstance(node, ast.Assign) or (
            isinstance(node, ast.Return) and node.value is not None
        ):
            sites.append((node, "value"))
    return sites


def _wrap(tree: ast.AST, rng: np.random.Generator) -> bool:
    sites = _expressions(tree)
    if not sites:
        return False
    parent, field = sites[int(rng.integers(len(sites)))]
    inner = getattr(parent, field)
    constant = ast.Constant(float(f"{float(rng.normal(0, 1)):.3g}"))
    kind = int(rng.integers(4))
    wrapped: ast.expr
    if kind == 0:
        wrapped = ast.BinOp(inner, ast.Mult(), constant)
    elif kind == 1:
        wrapped = ast.BinOp(inner, ast.Add(), constant)
    elif kind == 2:
        wrapped = ast.UnaryOp(ast.USub(), inner)
    else:
        wrapped = ast.BinOp(inner, ast.Pow(), ast.Constant(2))
    setattr(parent, field, wrapped)
    return True


def _bodies(tree: ast.AST) -> list[list[ast.stmt]]:
    return [
        body
        for node in ast.walk(tree)
        for body in (getattr(node, "body", None), getattr(node, "orelse", None))
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt)
    ]


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _delete(tree: ast.AST, rng: np.random.Generator) -> bool:
    sites = [
        (body, i)
        for body in _bodies(tree)
        if len(body) >= 2
        for i, statement in enumerate(body)
        if not _is_docstring(statement)
        and not (isinstance(statement, ast.Return) and i == len(body) - 1)
    ]
    if not sites:
        return False
    body, index = sites[int(rng.integers(len(sites)))]
    del body[index]
    return True


def _duplicate(tree: ast.AST, rng: np.random.Generator) -> bool:
    sites = [
        (body, i)
        for body in _bodies(tree)
        for i, statement in enumerate(body)
        if not _is_docstring(statement)
        and not isinstance(statement, ast.Return | ast.FunctionDef | ast.ClassDef)
    ]
    if not sites:
        return False
    body, index = sites[int(rng.integers(len(sites)))]
    body.insert(index, copy.deepcopy(body[index]))
    return True


EDITS: dict[str, Callable[[ast.AST, np.random.Generator], bool]] = {
    "perturb": _perturb,
    "swap": _swap,
    "rename": _rename,
    "wrap": _wrap,
    "delete": _delete,
    "duplicate": _duplicate,
}


def random_edit(code: str, rng: np.random.Generator, *, tries: int = 8) -> tuple[str, str] | None:
    """`code` after one random structural edit, and the edit's name (None when no edit
    changed it in `tries` attempts)."""
    try:
        original = ast.parse(code)
    except SyntaxError:
        return None
    before = ast.unparse(original)
    for _ in range(tries):
        tree = copy.deepcopy(original)
        name = list(EDITS)[int(rng.integers(len(EDITS)))]
        if not EDITS[name](tree, rng):
            continue
        ast.fix_missing_locations(tree)
        try:
            text = ast.unparse(tree)
            ast.parse(text)
        except (SyntaxError, ValueError, RecursionError):
            continue
        if text != before and all(
            math.isfinite(n.value) for n in _numbers(ast.parse(text)) if isinstance(n.value, float)
        ):
            return text + "\n", name
    return None
