"""Safe parsing and evaluation of arithmetic expressions written by a language model.

Nothing here calls `eval`: text is normalised, parsed with `ast`, checked against a
whitelist of nodes, functions and names, and evaluated by walking the tree with numpy.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping

import numpy as np

FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "tanh": np.tanh,
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
}
ALIASES = {"ln": "log", "asin": "arcsin", "acos": "arccos", "atan": "arctan", "fabs": "abs"}
CONSTANTS = {"pi": float(np.pi), "e": float(np.e)}
BINARY: dict[type[ast.operator], tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.divide),
    ast.Pow: ("**", np.power),
}
MAX_LENGTH = 400


class ExpressionError(ValueError):
    """The text is not an allowed expression; the message says why."""


_LHS = re.compile(r"^\s*(?:[A-Za-z_]\w*\s*(?:\([^()=]*\))?\s*=(?!=)\s*)+")
_NUMBER_THEN_NAME = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?|\.\d+)(?![eE][+-]?\d)\s*(?=[A-Za-z_(])")
_CLOSE_THEN_OPERAND = re.compile(r"\)\s*(?=[A-Za-z_(\d])")
_TRAILING_OPERATOR = re.compile(r"[\s+\-*/^,;:=.]+$")


def normalise(text: str, variables: Iterable[str] = ()) -> str:
    """Turn an LM completion into candidate expression text.

    Takes the first non-empty line, drops a ``y =`` style left-hand side, markdown
    and trailing punctuation, writes ``^`` as ``**``, unicode operators as ASCII, and
    makes implicit products explicit (``2x`` -> ``2*x``, ``)(`` -> ``)*(``,
    ``m(v+1)`` -> ``m*(v+1)`` for a variable ``m``). Text after a second ``=``, a
    sentence end (". ") or a ";" is dropped.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    expr = lines[0] if lines else ""
    expr = expr.strip("`$ ")
    expr = _LHS.sub("", expr)
    expr = (
        expr.replace("^", "**")
        .replace("×", "*")
        .replace("·", "*")
        .replace("⋅", "*")
        .replace("÷", "/")
        .replace("−", "-")
        .replace("π", "pi")
        .replace("√", "sqrt")
        .replace("²", "**2")
        .replace("³", "**3")
    )
    expr = expr.split("#", 1)[0]
    expr = re.split(r"\.\s|(?<![=<>!])=(?!=)|\s,\s|;", expr, maxsplit=1)[
        0
    ]  # prose or a 2nd equation
    expr = _NUMBER_THEN_NAME.sub(r"\1*", expr)
    expr = _CLOSE_THEN_OPERAND.sub(")*", expr)
    for name in variables:
        expr = re.sub(rf"\b{re.escape(name)}\s*\(", f"{name}*(", expr)
    expr = _TRAILING_OPERATOR.sub("", expr.strip())
    return expr.strip()


def _balance(expr: str) -> str:
    opened = expr.count("(") - expr.count(")")
    return expr + ")" * opened if opened > 0 else expr


def parse_expression(text: str, variables: Iterable[str] = ()) -> str:
    """Normalise and parse `text`; return the canonical expression text.

    Raises:
        ExpressionError: it is not a syntactically valid expression even after repairs.
    """
    variables = list(variables)
    expr = normalise(text, variables)
    if not expr:
        raise ExpressionError("empty expression")
    if len(expr) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    attempts = [expr, _balance(expr)]
    attempts.append(re.sub(r"([\w.)])\s+(?=[A-Za-z_(])", r"\1*", attempts[-1]))
    last_error = ""
    for attempt in attempts:
        try:
            tree = ast.parse(attempt, mode="eval")
        except SyntaxError as exc:
            last_error = f"syntax error: {exc.msg}"
            continue
        except (ValueError, RecursionError, MemoryError) as exc:
            last_error = f"cannot parse: {exc}"
            continue
        return ast.unparse(tree)
    raise ExpressionError(f"{last_error} in {expr!r}")


class CompiledExpression:
    """A whitelisted expression tree, ready to evaluate on arrays of data."""

    def __init__(self, text: str, variables: Iterable[str]) -> None:
        self.text = text
        self.variables = tuple(variables)
        try:
            self.tree = ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise ExpressionError(f"syntax error: {exc.msg}") from exc
        self.size = 0
        self.operators: set[str] = set()
        self.names: set[str] = set()
        self._check(self.tree)
        self.free = {n for n in self.names if re.fullmatch(r"c\d+", n)}
        """The free parameters (c0, c1, ...) the formula uses."""

    def _check(self, node: ast.AST) -> None:
        self.size += 1
        if isinstance(node, ast.BinOp):
            if type(node.op) not in BINARY:
                raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
            self.operators.add(BINARY[type(node.op)][0])
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd):
                raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
            if isinstance(node.op, ast.USub):
                self.operators.add("neg")
            self._check(node.operand)
        elif isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            name = ALIASES.get(name, name) if name else None
            if name not in FUNCTIONS:
                shown = ast.unparse(node.func)
                raise ExpressionError(
                    f"function {shown!r} is not allowed; allowed: {', '.join(FUNCTIONS)}"
                )
            if len(node.args) != 1 or node.keywords:
                raise ExpressionError(f"{name}() takes exactly one argument")
            self.operators.add(name)
            self._check(node.args[0])
        elif isinstance(node, ast.Name):
            if node.id not in self.variables and node.id not in CONSTANTS:
                raise ExpressionError(
                    f"unknown name {node.id!r}; the variables are {', '.join(self.variables)}"
                )
            self.names.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ExpressionError(f"constant {node.value!r} is not a number")
        else:
            raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")

    def __call__(self, data: Mapping[str, np.ndarray], length: int) -> np.ndarray:
        """Evaluate on `data` (one array per variable); returns an array of `length`."""
        with np.errstate(all="ignore"):
            value = self._eval(self.tree, data)
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (length,))

    def _eval(self, node: ast.AST, data: Mapping[str, np.ndarray]) -> np.ndarray | float:
        if isinstance(node, ast.BinOp):
            left = self._eval(node.left, data)
            right = self._eval(node.right, data)
            if isinstance(node.op, ast.Pow) and np.any(np.abs(right) > 16):
                return np.full(np.shape(left), np.nan) if np.ndim(left) else float("nan")
            return BINARY[type(node.op)][1](left, right)  # type: ignore[index]
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, data)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call):
            name = node.func.id  # type: ignore[attr-defined]
            return FUNCTIONS[ALIASES.get(name, name)](self._eval(node.args[0], data))  # type: ignore[arg-type]
        if isinstance(node, ast.Name):
            return data[node.id] if node.id in data else CONSTANTS[node.id]
        if isinstance(node, ast.Constant):
            return float(node.value)
        raise ExpressionError(f"{type(node).__name__} is not allowed")  # unreachable after _check
