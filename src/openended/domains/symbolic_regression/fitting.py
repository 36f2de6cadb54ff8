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
import math
import operator
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from openended.domains.symbolic_regression.expression import CompiledExpression

PARAMETER = re.compile(r"c\d+")
SHOWN_DIGITS = 4


class FitError(ValueError):
    """The constants could not be fitted (the message says why)."""


@dataclass(frozen=True)
class Fit:
    """A fitted formula: its text with the constants filled in (rounded), the constants,
    the linear scaling, and its normalised errors on the training and validation splits."""

    formula: str
    constants: dict[str, float]
    scale: tuple[float, float]
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


def fit(
    text: str,
    variables: Sequence[str],
    train: Split,
    validation: Split,
    *,
    fit_constants: bool = True,
    linear_scaling: bool = True,
    restarts: int = 3,
    seed: int = 0,
    max_seconds: float = 0.5,
) -> Fit:
    """Fit the constants of the formula `text` on `train` (with `fit_constants`; else
    only the linear scaling, if on); score it on `validation`."""
    tree = _Parameterised()
    body = tree.visit(ast.parse(text, mode="eval"))
    names = list(tree.initial)
    expression = CompiledExpression(ast.unparse(body), [*variables, *names])

    def predict(values: np.ndarray, split: Split) -> np.ndarray:
        data = {**split.inputs, **dict(zip(names, map(float, values), strict=True))}
        return expression(data, split.size)

    def scaled(values: np.ndarray) -> tuple[np.ndarray, float, float]:
        raw = predict(values, train)
        a, b = _scale(raw, train.target) if linear_scaling else (0.0, 1.0)
        return a + b * raw, a, b

    def residuals(values: np.ndarray) -> np.ndarray:
        prediction, _, _ = scaled(values)
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
            except (ValueError, FloatingPointError, OverflowError) as exc:
                if i == 0:
                    raise FitError(f"constant fitting failed: {exc}") from None
                continue
            if np.all(np.isfinite(result.x)) and result.cost < best_cost:
                best, best_cost = result.x, float(result.cost)
    prediction, a, b = scaled(best)
    if not np.all(np.isfinite(prediction)):
        raise FitError("gives non-finite values on the training data")
    check = a + b * predict(best, validation)
    if not np.all(np.isfinite(check)):
        raise FitError("the fitted formula gives non-finite values on the validation data")
    constants = dict(zip(names, map(float, best), strict=True))
    return Fit(
        formula=_written(body, constants, (a, b)),
        constants={_shown_name(k, i): v for i, (k, v) in enumerate(constants.items())},
        scale=(a, b),
        nmse_train=_nmse(prediction, train.target),
        nmse_validation=_nmse(check, validation.target),
    )


def _scale(raw: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """The least-squares ``a, b`` of ``target ≈ a + b·raw`` (b = 0 for a constant raw)."""
    if not np.all(np.isfinite(raw)):
        return 0.0, 1.0
    centred = raw - raw.mean()
    spread = float(np.dot(centred, centred))
    b = float(np.dot(centred, target - target.mean()) / spread) if spread > 1e-300 else 0.0
    return float(target.mean() - b * raw.mean()), b


def _nmse(prediction: np.ndarray, target: np.ndarray) -> float:
    variance = float(np.var(target)) or 1.0
    return float(np.mean((prediction - target) ** 2) / variance)


def _shown_name(name: str, index: int) -> str:
    return name if PARAMETER.fullmatch(name) else f"k{index}"


def _written(body: ast.AST, constants: Mapping[str, float], scale: tuple[float, float]) -> str:
    """The formula with its constants and scaling written in (rounded)."""

    class Fill(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in constants:
                return ast.copy_location(_number(constants[node.id]), node)
            return node

    a, b = scale
    constants = dict(constants)
    uses = Counter(n.id for n in ast.walk(body) if isinstance(n, ast.Name))
    folded: list[tuple[int, ast.AST]] = []  # terms with b folded into their constant
    rest: list[tuple[int, ast.AST]] = []  # terms that keep b
    for sign, term in _terms(getattr(body, "body", body)):
        if isinstance(term, ast.Name) and term.id in constants and uses[term.id] == 1:
            a += sign * b * constants[term.id]  # an additive constant joins a
            continue
        factor = _constant_factor(term, constants)
        if factor is not None and uses[factor] == 1:
            constants[factor] *= b
            folded.append((sign, term))
        else:
            rest.append((sign, term))
    if rest and math.isclose(b, 1.0, rel_tol=1e-9):
        folded, rest = folded + rest, []
    pieces = [_signed(sign, ast.unparse(Fill().visit(term))) for sign, term in folded]
    if rest:
        inner = " + ".join(_signed(sign, ast.unparse(Fill().visit(t))) for sign, t in rest)
        pieces.append(f"{_rounded(b)}*({inner})")
    if abs(a) > 1e-12 * max(1.0, abs(b)) or not pieces:
        pieces.insert(0, f"({_rounded(a)})")
    filled = " + ".join(pieces)
    return ast.unparse(_Signs().visit(_Fold().visit(ast.parse(filled, mode="eval"))))


class _Fold(ast.NodeTransformer):
    """Write a subexpression of numbers only (``-8.9 / -0.36``) as one rounded number."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        left, right = _value(node.left), _value(node.right)
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
    """The signed terms of a sum: ``x - (y - z)`` gives ``[(1, x), (-1, y), (1, z)]``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        right_sign = sign if isinstance(node.op, ast.Add) else -sign
        return _terms(node.left, sign) + _terms(node.right, right_sign)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _terms(node.operand, -sign)
    return [(sign, node)]


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


def _constant_factor(body: ast.AST, constants: Mapping[str, float]) -> str | None:
    """A fitted constant that multiplies the whole term (``k * ...``, ``... * k``, also
    inside a division's numerator), into which the linear scaling's b folds."""
    node = body
    while True:
        if isinstance(node, ast.Name) and node.id in constants:
            return node.id
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            for side in (node.left, node.right):
                if isinstance(side, ast.Name) and side.id in constants:
                    return side.id
            node = node.left
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            node = node.left
        else:
            return None


def _rounded(value: float) -> str:
    return f"{value:.{SHOWN_DIGITS}g}"


def _number(value: float) -> ast.AST:
    shown = float(_rounded(value))
    if shown < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-shown))
    return ast.Constant(value=shown)
