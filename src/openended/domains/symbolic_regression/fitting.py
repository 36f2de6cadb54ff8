"""The model proposes a formula's shape; its numbers are fitted to the data.

LLM-SR (Shojaee et al. 2024, arXiv 2404.18400) has a language model write equation
skeletons with free parameters and fits them with a numeric optimiser; linear scaling
(Keijzer 2003, "Improving symbolic regression with interval arithmetic and linear
scaling") fits ``y ≈ a + b·f(x)`` in closed form, so that a formula right up to scale and
offset scores as right. Here every numeric literal of a formula (but integer exponents,
which are shape) and every free parameter ``c0, c1, ...`` is fitted with
`scipy.optimize.least_squares` on a training split, from its written value and from a few
random restarts, inside a linear scaling; the formula is scored on a held-out split.
"""

from __future__ import annotations

import ast
import copy
import math
import operator
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import least_squares

from openended.domains.symbolic_regression.expression import CompiledExpression

PARAMETER = re.compile(r"c\d+")
SHOWN_DIGITS = 4


class FitError(ValueError):
    """The constants could not be fitted (the message says why)."""


@dataclass(frozen=True)
class Fit:
    """A fitted formula: its text with the constants filled in (rounded), its shape (the
    formula without what the scaling fits anyway: the intercept and each scaled term's
    multiplier, see `_shape`), the constants,
    the scaling ``(a, b_1, ..., b_T)`` (one ``b`` per scaled term), and its normalised
    errors on the training and validation splits."""

    formula: str
    shape: str
    constants: dict[str, float]
    scale: tuple[float, ...]
    nmse_train: float
    nmse_validation: float


@dataclass(frozen=True)
class Split:
    """Inputs and target of one part of the data."""

    inputs: Mapping[str, np.ndarray]
    target: np.ndarray

    @property
    def size(self) -> int:
        return int(self.target.shape[0])


class _Parameterised(ast.NodeTransformer):
    """Replace fittable literals by names ``_k0, _k1, ...``; collect ``c0, c1, ...``."""

    def __init__(self) -> None:
        self.initial: dict[str, float] = {}

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node.left = self.visit(node.left)
        exponent = node.right
        is_shape = (
            isinstance(node.op, ast.Pow)
            and isinstance(exponent, ast.Constant)
            and isinstance(exponent.value, int | float)
            and float(exponent.value).is_integer()
        )
        if not is_shape:  # x**2 keeps its 2: that is the formula's shape
            node.right = self.visit(node.right)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            return node
        name = f"_k{len([k for k in self.initial if k.startswith('_k')])}"
        self.initial[name] = float(node.value)
        return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if PARAMETER.fullmatch(node.id):
            self.initial.setdefault(node.id, 1.0)
        return node


Scaling = Literal["off", "global", "terms"]
"""How the formula's output is scaled to the target: not at all; ``a + b·f(x)`` (Keijzer
2003); or ``a + Σ b_i·t_i(x)`` over the top-level terms ``t_i`` of the formula's sum (the
linear combination of multigene GP, Searson et al. 2010, and of FFX, McConaghy 2011)."""


def fit(
    text: str,
    variables: Sequence[str],
    train: Split,
    validation: Split,
    *,
    fit_constants: bool = True,
    scaling: Scaling = "terms",
    restarts: int = 3,
    seed: int = 0,
    max_seconds: float = 0.5,
) -> Fit:
    """Fit the constants of the formula `text` on `train` (with `fit_constants`; else
    only the scaling) inside the `scaling`, solved in closed form for every trial of the
    constants (variable projection); score the fitted formula on `validation`."""
    tree = _Parameterised()
    body = tree.visit(ast.parse(text, mode="eval"))
    names = list(tree.initial)
    inputs = [*variables, *names]
    terms = _terms(body.body) if scaling == "terms" else [(1, body.body)]
    columns = [
        (sign, CompiledExpression(ast.unparse(term), inputs))
        for sign, term in terms
        if scaling == "off" or _uses(term, variables)  # constant terms join the intercept
    ]
    if not columns:  # a formula without its variables: a constant
        columns = [(1, CompiledExpression(ast.unparse(body.body), inputs))]

    def design(values: np.ndarray, split: Split) -> np.ndarray:
        data = {**split.inputs, **dict(zip(names, map(float, values), strict=True))}
        return np.stack([sign * term(data, split.size) for sign, term in columns], axis=1)

    def scaled(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The prediction on the training split and the scaling ``(a, b_1, ..., b_T)``."""
        matrix = design(values, train)
        if scaling == "off":
            coefficients = np.array([0.0, *np.ones(matrix.shape[1])])
        else:
            coefficients = _scale(matrix, train.target)
        return coefficients[0] + matrix @ coefficients[1:], coefficients

    def residuals(values: np.ndarray) -> np.ndarray:
        prediction, _ = scaled(values)
        difference = prediction - train.target
        return np.where(np.isfinite(difference), difference, 1e6 * (1 + np.std(train.target)))

    start = np.array([tree.initial[n] for n in names], dtype=np.float64)
    best = start
    if names and fit_constants:
        rng = np.random.default_rng(seed)
        candidates = [start] + [
            start
            * np.exp(rng.normal(0.0, 1.0, size=start.shape))
            * rng.choice([-1, 1], start.shape)
            for _ in range(restarts)
        ]
        best_cost = math.inf
        deadline = time.perf_counter() + max_seconds
        for i, initial in enumerate(candidates):
            if i > 0 and time.perf_counter() > deadline:
                break
            try:
                result = least_squares(
                    residuals, initial, method="trf", max_nfev=100 * (1 + len(names))
                )
            except (ValueError, FloatingPointError, OverflowError, np.linalg.LinAlgError) as exc:
                if i == 0:
                    raise FitError(f"constant fitting failed: {exc}") from None
                continue
            if np.all(np.isfinite(result.x)) and result.cost < best_cost:
                best, best_cost = result.x, float(result.cost)
    prediction, coefficients = scaled(best)
    if not np.all(np.isfinite(prediction)):
        raise FitError("gives non-finite values on the training data")
    check = coefficients[0] + design(best, validation) @ coefficients[1:]
    if not np.all(np.isfinite(check)):
        raise FitError("the fitted formula gives non-finite values on the validation data")
    constants = dict(zip(names, map(float, best), strict=True))
    intercept, multipliers = _per_term(terms, variables, coefficients, scaling)
    return Fit(
        formula=_written(body, constants, (intercept, multipliers)),
        shape=_shape(body, constants, variables, scaling, multipliers),
        constants={_shown_name(k, i): v for i, (k, v) in enumerate(constants.items())},
        scale=tuple(float(c) for c in coefficients),
        nmse_train=_nmse(prediction, train.target),
        nmse_validation=_nmse(check, validation.target),
    )


def _uses(node: ast.AST, variables: Sequence[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in variables for n in ast.walk(node))


def _per_term(
    terms: list[tuple[int, ast.AST]],
    variables: Sequence[str],
    coefficients: np.ndarray,
    scaling: Scaling,
) -> tuple[float, list[float]]:
    """The intercept and one multiplier per top-level term of the formula, from the
    fitted scaling (a constant term that joined the intercept gets 0)."""
    intercept, slopes = float(coefficients[0]), [float(c) for c in coefficients[1:]]
    if scaling != "terms":
        return intercept, [slopes[0]] * len(_terms(terms[0][1])) if slopes else []
    if not any(_uses(term, variables) for _, term in terms):
        return intercept, [slopes[0]] * len(terms)
    given = iter(slopes)
    return intercept, [next(given) if _uses(term, variables) else 0.0 for _, term in terms]


def _scale(matrix: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares ``a, b_1, ..., b_T`` of ``target ≈ a + Σ b_i·matrix[:, i]`` (the
    minimum-norm solution when columns are constant or collinear)."""
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if not np.all(np.isfinite(matrix)):
        return np.array([0.0, *np.ones(matrix.shape[1])])
    means = matrix.mean(axis=0)
    centred = matrix - means
    norms = np.sqrt((centred**2).sum(axis=0))
    usable = norms > 1e-150 * max(1.0, float(np.abs(matrix).max(initial=0.0)))
    slopes = np.zeros(matrix.shape[1])
    if usable.any():
        solution, *_ = np.linalg.lstsq(
            centred[:, usable] / norms[usable], target - target.mean(), rcond=None
        )
        slopes[usable] = solution / norms[usable]
    return np.array([float(target.mean() - means @ slopes), *slopes])


def _nmse(prediction: np.ndarray, target: np.ndarray) -> float:
    variance = float(np.var(target)) or 1.0
    return float(np.mean((prediction - target) ** 2) / variance)


def _shown_name(name: str, index: int) -> str:
    return name if PARAMETER.fullmatch(name) else f"k{index}"


def _written(
    body: ast.AST, constants: Mapping[str, float], scale: tuple[float, Sequence[float]]
) -> str:
    """The formula with its constants and scaling written in (rounded): `scale` is the
    intercept and one multiplier per top-level term of the sum. A multiplier folds into
    the term's own constant factor where it has one (used nowhere else); terms that share
    a multiplier are written once inside it, ``b*(t1 + t2)``."""

    class Fill(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in constants:
                return ast.copy_location(_number(constants[node.id]), node)
            return node

    a, multipliers = scale
    constants = dict(constants)
    body = copy.deepcopy(body)  # filling in the numbers changes the tree
    uses = Counter(n.id for n in ast.walk(body) if isinstance(n, ast.Name))
    folded: list[tuple[int, ast.AST]] = []  # terms with their multiplier folded in
    rest: dict[float, list[tuple[int, ast.AST]]] = {}  # terms that keep a multiplier
    terms = _terms(getattr(body, "body", body))
    for (sign, term), b in zip(terms, multipliers, strict=True):
        if isinstance(term, ast.Name) and term.id in constants and uses[term.id] == 1:
            a += sign * b * constants[term.id]  # an additive constant joins a
            continue
        if b == 0.0:
            continue  # a term without the variables, already inside the intercept
        factor = _constant_factor(term, constants)
        if math.isclose(b, 1.0, rel_tol=1e-9):
            folded.append((sign, term))
        elif factor is not None and uses[factor[0]] == 1:
            name, power = factor
            constants[name] = constants[name] * b if power == 1 else constants[name] / b
            folded.append((sign, term))
        else:
            rest.setdefault(b, []).append((sign, term))
    pieces = [_signed(sign, ast.unparse(Fill().visit(term))) for sign, term in folded]
    for b, shared in rest.items():
        if len(shared) == 1:  # -b * (x) rather than b * (-(x))
            ((sign, term),) = shared
            pieces.append(f"{_rounded(sign * b)}*({ast.unparse(Fill().visit(term))})")
            continue
        inner = " + ".join(_signed(sign, ast.unparse(Fill().visit(t))) for sign, t in shared)
        pieces.append(f"{_rounded(b)}*({inner})")
    if abs(a) > 1e-12 * max(1.0, *map(abs, multipliers)) or not pieces:
        pieces.insert(0, f"({_rounded(a)})")
    filled = " + ".join(pieces)
    return ast.unparse(_Signs().visit(_Fold().visit(ast.parse(filled, mode="eval"))))


def _shape(
    body: ast.AST,
    constants: Mapping[str, float],
    variables: Sequence[str],
    scaling: Scaling,
    multipliers: Sequence[float],
) -> str:
    """The formula as the scaling sees it: without the terms that use no variable (they
    join the intercept) and without each term's leading constant factor (its multiplier
    is fitted); with term scaling ``-5.9 + 2.8*(m*v) + 0.79*u*(m + 0.59)`` has the shape
    ``m*v + u*(m + 0.59)``, which fits to the same formula. The other constants are
    written in (rounded); a term keeps the sign of its fitted multiplier. Without scaling
    the shape is the fitted formula itself; with global scaling, without ``a`` and ``b``."""
    if scaling == "off":
        return _written(body, constants, (0.0, [1.0] * len(_terms(getattr(body, "body", body)))))
    uses = Counter(n.id for n in ast.walk(body) if isinstance(n, ast.Name))
    terms = _terms(getattr(body, "body", body))
    if scaling == "global":
        terms, multipliers = [(1, getattr(body, "body", body))], [1.0]
    kept = []
    for (sign, term), multiplier in zip(terms, multipliers, strict=True):
        if not _uses(term, variables):
            continue
        factor = _constant_factor(term, constants)
        if factor is not None and uses[factor[0]] == 1:
            term, sign_of_factor = _without_factor(term, factor[0])
            multiplier *= sign_of_factor * constants[factor[0]]
        kept.append((sign if multiplier >= 0 else -sign, term))
    if not kept:
        return "0"
    rest = {name: value for name, value in constants.items() if uses[name]}
    joined = _joined(kept)
    return _written(ast.Expression(body=joined), rest, (0.0, [1.0] * len(_terms(joined))))


def _joined(terms: Sequence[tuple[int, ast.AST]]) -> ast.AST:
    """The sum ``± t1 ± t2 ...`` of signed terms."""
    first_sign, total = terms[0]
    if first_sign < 0:
        total = ast.UnaryOp(op=ast.USub(), operand=total)
    for sign, term in terms[1:]:
        total = ast.BinOp(left=total, op=ast.Add() if sign > 0 else ast.Sub(), right=term)
    return total


def _without_factor(node: ast.AST, name: str) -> tuple[ast.AST, int]:
    """The term without its constant factor `name` (found as `_constant_factor` finds it),
    and -1 if a minus stood on the factor (it goes too), else 1."""
    if _named_constant(node, {name: 0.0}) == name:
        return ast.Constant(value=1), (-1 if isinstance(node, ast.UnaryOp) else 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        for side, other in ((node.left, node.right), (node.right, node.left)):
            if _named_constant(side, {name: 0.0}) == name:
                return other, (-1 if isinstance(side, ast.UnaryOp) else 1)
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Div)
        and _named_constant(node.right, {name: 0.0}) == name
    ):
        return node.left, (-1 if isinstance(node.right, ast.UnaryOp) else 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Div):
        left, sign = _without_factor(node.left, name)
        return ast.BinOp(left=left, op=node.op, right=node.right), sign
    return node, 1


class _Fold(ast.NodeTransformer):
    """Write a subexpression of numbers only (``-8.9 / -0.36``) as one rounded number."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        left, right = _value(node.left), _value(node.right)
        if right == 1.0 and isinstance(node.op, ast.Mult | ast.Div):
            return node.left
        if left == 1.0 and isinstance(node.op, ast.Mult):
            return node.right
        operation = _ARITHMETIC.get(type(node.op))
        if left is None or right is None or operation is None:
            return node
        try:  # in floats: a power of two numbers cannot run away as ints can
            value = float(operation(left, right))
        except (ArithmeticError, ValueError, TypeError):
            return node
        return _number(value) if math.isfinite(value) else node


_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def _value(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand)
        return None if inner is None else -inner
    return None


def _terms(node: ast.AST, sign: int = 1) -> list[tuple[int, ast.AST]]:
    """The signed terms of a sum: ``x - (y - z)`` gives ``[(1, x), (-1, y), (1, z)]``, and
    ``-x * y`` gives ``[(-1, x * y)]``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        right_sign = sign if isinstance(node.op, ast.Add) else -sign
        return _terms(node.left, sign) + _terms(node.right, right_sign)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _terms(node.operand, -sign)
    positive = _without_leading_minus(node)  # -m * v ** 2 is -(m * v ** 2)
    return [(sign, node)] if positive is None else [(-sign, positive)]


def _signed(sign: int, text: str) -> str:
    return f"({text})" if sign > 0 else f"-({text})"


def _without_leading_minus(node: ast.AST) -> ast.AST | None:
    """``k * x / y`` for ``-k * x / y`` (the minus on the leftmost factor), else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Div):
        left = _without_leading_minus(node.left)
        return None if left is None else ast.BinOp(left=left, op=node.op, right=node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return node.operand
    return None


class _Signs(ast.NodeTransformer):
    """Tidy the signs that filling in negative constants leaves: ``--x`` is ``x``,
    ``a + -x`` is ``a - x``, ``a - -x`` and ``a - -k * x`` are ``a + x`` and ``a + k * x``."""

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        inner = node.operand
        if (
            isinstance(node.op, ast.USub)
            and isinstance(inner, ast.UnaryOp)
            and isinstance(inner.op, ast.USub)
        ):
            return inner.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        right = node.right
        op = node.op
        while isinstance(op, ast.Add | ast.Sub):  # a - -k * x / y is a + k * x / y
            positive = _without_leading_minus(right)
            if positive is None:
                break
            op, right = (ast.Sub() if isinstance(op, ast.Add) else ast.Add()), positive
        return ast.BinOp(left=node.left, op=op, right=right)


def _constant_factor(body: ast.AST, constants: Mapping[str, float]) -> tuple[str, int] | None:
    """A fitted constant that multiplies the whole term (``k * ...``, ``... * k``, ``-k *
    ...``, also inside a division's numerator; power 1) or divides it (``... / k``; power
    -1), into which a term's multiplier folds."""
    node = body
    while True:
        if name := _named_constant(node, constants):
            return name, 1
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            for side in (node.left, node.right):
                if name := _named_constant(side, constants):
                    return name, 1
            node = node.left
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if name := _named_constant(node.right, constants):
                return name, -1
            node = node.left
        else:
            return None


def _named_constant(node: ast.AST, constants: Mapping[str, float]) -> str | None:
    """The name of a fitted constant `node` is, alone or under a minus, else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return node.id if isinstance(node, ast.Name) and node.id in constants else None


def _rounded(value: float) -> str:
    return f"{value:.{SHOWN_DIGITS}g}"


def _number(value: float) -> ast.AST:
    shown = float(_rounded(value))
    if shown < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-shown))
    return ast.Constant(value=shown)
