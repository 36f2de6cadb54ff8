"""Tune the float literals of an evolved program with a small, counted budget of evaluator
calls: the language model proposes the structure, a numeric optimiser fits the numbers.

What is tuned: by default the numbers a program declares as parameters, in a
``PARAMS = [...]`` assignment inside the evolved region (module level or in the evolved
function); a program that declares none is left alone. ``target = "floats"`` tunes every
float literal of the region instead.

This is the program-evolution counterpart of fitting an equation skeleton's parameters
(LLM-SR, Shojaee et al. 2024, arXiv 2404.18400); FunSearch (Romera-Paredes et al. 2024) and
AlphaEvolve (Novikov et al. 2025) report that evolved heuristics are sensitive to their
constants. The optimisers are Nelder–Mead (Nelder & Mead 1965, from scipy) and CMA-ES
(Hansen 2016, arXiv 1604.00772, the `cma` package).

The objective is the score of the evaluator's cheapest stage (``evaluate_stage1`` when the
evaluator has a cascade, else ``evaluate``). Every call counts against the budget, which is
never exceeded; a candidate program that fails for some constants scores worst and the
search goes on. When tuning used a cheaper stage than ``evaluate``, the best tuned program is
evaluated in full (one more call from the same budget) and replaces the child only if its
full score is higher: the program stored is always one that was evaluated.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import hashlib
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class RefineSettings(BaseModel):
    """Options of the ``[domain.refine]`` table."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="fit the parameters of every valid child")
    target: Literal["params", "floats"] = Field(
        "params",
        description="what to fit: the numbers in a PARAMS = [...] list of the evolved region "
        "(programs without one are left alone), or every float literal of the region",
    )
    evaluations: int = Field(
        12, ge=2, description="evaluator calls per child for tuning (counted by the budget)"
    )
    method: Literal["nelder-mead", "cma", "scan"] = Field(
        "scan",
        description="the optimiser: scan (each parameter in turn on a log-scale grid of "
        "magnitudes: new terms whose weight starts at zero), nelder-mead or cma",
    )
    max_literals: int = Field(
        8, ge=1, description="fit at most this many parameters or literals (the first)"
    )
    step: float = Field(
        0.25, gt=0, description="first step, relative to each literal (absolute for 0.0)"
    )
    seed: int = Field(0, description="seed of CMA-ES (mixed with the program's hash)")
    seed_evaluations: int = Field(
        48,
        ge=0,
        description="evaluator calls for fitting the initial program once, at the start "
        "(0: the per-child budget); counted by the run's budget",
    )
    seed_method: Literal["nelder-mead", "cma", "scan"] | None = Field(
        "cma", description="the optimiser of that one-off fit (none: `method`)"
    )

    def for_seed(self) -> RefineSettings:
        """The settings of the one-off fit of the initial program: a larger budget,
        spent once, where every child starts from its values."""
        return self.model_copy(
            update={
                "evaluations": self.seed_evaluations or self.evaluations,
                "method": self.seed_method or self.method,
            }
        )


PARAMETERS_NAME = "PARAMS"
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class FloatLiteral:
    """A numeric constant at `start:end` (character offsets) in a program's text.

    `signed`: the span includes the number's sign (a ``PARAMS`` entry such as ``-0.5``),
    so a negative value needs no brackets."""

    start: int
    end: int
    value: float
    signed: bool = False


def tunable_numbers(program: str, begin: int, end: int, target: str) -> list[FloatLiteral]:
    """What the refine stage fits in `program[begin:end]`: its declared parameters
    (``target="params"``) or its float literals (``"floats"``)."""
    if target == "params":
        return declared_parameters(program, begin, end)
    return float_literals(program, begin, end)


def float_literals(program: str, begin: int, end: int) -> list[FloatLiteral]:
    """The finite float literals of `program` whose text lies within `begin:end`."""
    tree = _parsed(program)
    nodes = [
        node
        for node in (ast.walk(tree) if tree is not None else ())
        if isinstance(node, ast.Constant)
        and type(node.value) is float
        and math.isfinite(node.value)
    ]
    return _within(program, [(node, float(node.value), False) for node in nodes], begin, end)


def numeric_value(node: ast.expr) -> float | None:
    """The value of a numeric literal, signed or not (``2``, ``-0.5``, ``+1e-3``)."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = sign * float(node.value)
        return value if math.isfinite(value) else None
    return None


def declared_parameters(program: str, begin: int, end: int) -> list[FloatLiteral]:
    """The numbers of the ``PARAMS = [...]`` (or tuple) assignments whose text lies within
    `begin:end`, in order. Entries that are not numeric literals are not parameters."""
    tree = _parsed(program)
    found: list[tuple[ast.expr, float, bool]] = []
    for value in parameter_lists(tree) if tree is not None else ():
        for element in value.elts:
            number = numeric_value(element)
            if number is not None:
                found.append((element, number, True))
    return _within(program, found, begin, end)


def _parsed(program: str) -> ast.Module | None:
    try:
        return ast.parse(program)
    except SyntaxError:
        return None


def _within(
    program: str, nodes: list[tuple[ast.expr, float, bool]], begin: int, end: int
) -> list[FloatLiteral]:
    """The (node, value, signed) numbers whose text lies within `begin:end`, as literals
    with their character spans, in order."""
    line_starts = _line_starts(program)
    found = []
    for node, value, signed in nodes:
        if node.end_lineno is None:
            continue
        start, stop = node_span(program, node, line_starts)
        if begin <= start and stop <= end:
            found.append(FloatLiteral(start, stop, value, signed))
    return sorted(found, key=lambda literal: literal.start)


def parameter_lists(tree: ast.AST) -> list[ast.List | ast.Tuple]:
    """The list or tuple values of ``PARAMS = ...`` and ``PARAMS: ... = ...``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        named = any(isinstance(t, ast.Name) and t.id == PARAMETERS_NAME for t in targets)
        if named and isinstance(value, ast.List | ast.Tuple):
            found.append(value)
    return found


def complete_parameters(code: str, *, most: int = 8) -> str:
    """`code` with its ``PARAMS`` list extended by zeros to the largest index the code reads
    (``PARAMS[4]``, or ``a, b, c = PARAMS``), at most `most` entries more.

    Small models add a term ``PARAMS[3] * x`` and forget to lengthen the list; the program
    would fail with an IndexError. A zero starts the new term switched off, and the refine
    stage fits it. Code with several ``PARAMS`` lists, a bare tuple or an empty list is left
    as it is."""
    tree = _parsed(code)
    if tree is None:
        return code
    lists = parameter_lists(tree)
    if len(lists) != 1 or not lists[0].elts:
        return code  # none, several (which one do the reads mean?), or nothing to follow
    needed = 0
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == PARAMETERS_NAME
            and isinstance(node.slice, ast.Constant)
            and type(node.slice.value) is int
        ):
            needed = max(needed, node.slice.value + 1)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Name)
            and node.value.id == PARAMETERS_NAME
            and isinstance(node.targets[0], ast.Tuple)
            and not any(isinstance(t, ast.Starred) for t in node.targets[0].elts)
        ):
            needed = max(needed, len(node.targets[0].elts))
    target = lists[0]
    missing = min(needed - len(target.elts), most)
    if missing <= 0:
        return code
    line_starts = _line_starts(code)
    if isinstance(target, ast.Tuple):  # only a bracketed tuple: (1.0, 2.0)
        start = _offset(code, line_starts, target.lineno, target.col_offset)
        if code[start] != "(":
            return code
    last = target.elts[-1]
    after = _offset(code, line_starts, last.end_lineno or last.lineno, last.end_col_offset or 0)
    return code[:after] + ", 0.0" * missing + code[after:]


def _line_starts(program: str) -> list[int]:
    """The offset of each line's start, lines broken where Python's parser breaks them
    (``\\r\\n``, ``\\r``, ``\\n``; not form feeds or Unicode separators as
    ``str.splitlines`` does)."""
    return [0] + [match.end() for match in LINE_BREAK.finditer(program)]


def _offset(program: str, line_starts: list[int], line: int, utf8_column: int) -> int:
    """A character offset from ast's (line, UTF-8 byte column)."""
    start = line_starts[line - 1]
    text = program[start : line_starts[line] if line < len(line_starts) else len(program)]
    return start + len(text.encode()[:utf8_column].decode(errors="ignore"))


def node_span(
    program: str, node: ast.expr | ast.stmt, line_starts: list[int] | None = None
) -> tuple[int, int]:
    """The character offsets of `node`'s text in `program` (the program it was parsed
    from; `line_starts` from `_line_starts`, computed when not given)."""
    starts = _line_starts(program) if line_starts is None else line_starts
    end_line = node.end_lineno or node.lineno
    return (
        _offset(program, starts, node.lineno, node.col_offset),
        _offset(program, starts, end_line, node.end_col_offset or 0),
    )


def rounded(value: float) -> float:
    """`value` as a tuned program shows it: 6 significant digits."""
    return float(f"{value:.6g}")


def substitute(program: str, literals: Sequence[FloatLiteral], values: Sequence[float]) -> str:
    """`program` with each literal replaced by its new value, rounded to 6 significant
    digits (negative ones in brackets, unless the literal's span holds its sign)."""
    out, position = [], 0
    for literal, value in zip(literals, values, strict=True):
        text = repr(rounded(value))
        bracket = value < 0 and not literal.signed
        out += [program[position : literal.start], f"({text})" if bracket else text]
        position = literal.end
    return "".join(out) + program[position:]


@dataclass(frozen=True)
class Trial:
    """One evaluated setting of the literals."""

    values: tuple[float, ...]
    score: float | None


class BudgetSpent(Exception):
    """Raised inside the optimiser when the evaluation budget is used up."""


@dataclass
class RefineResult:
    """The best trial with a finite score (None when every trial failed), and all trials."""

    best: Trial | None
    trials: list[Trial]


Objective = Callable[[tuple[float, ...]], Awaitable[float | None]]


async def tune(
    start: Sequence[float],
    objective: Objective,
    *,
    start_objective: float | None = None,
    settings: RefineSettings,
    budget: int,
    key: str,
) -> RefineResult:
    """Maximise `objective` over the literal values from `start` in at most `budget` calls.

    The search runs in normalised coordinates ``x = start + scale * z`` (scale = |start|,
    or 1 for zeros), so that one step size suits literals of any magnitude.
    `start_objective`, when known (the objective is the full score), spares the call at the
    start. The result's `best` is the best finite trial, whether or not it beats the start.
    """
    x0 = np.asarray(start, dtype=float)
    scale = np.where(x0 != 0, np.abs(x0), 1.0)
    trials: list[Trial] = []

    async def score_of(z: np.ndarray) -> float | None:
        if start_objective is not None and not z.any():
            return start_objective  # the child as evaluated: known, free
        if len(trials) >= budget:
            raise BudgetSpent
        values = tuple(float(v) for v in x0 + scale * z)
        index = len(trials)
        trials.append(Trial(values, None))
        score = await objective(values)
        trials[index] = Trial(values, score)
        return score

    try:
        if settings.method == "cma":
            await _cma(score_of, len(x0), settings, budget, key)
        elif settings.method == "scan":
            await _scan(score_of, x0, scale, start_objective, budget)
        else:
            await _nelder_mead(score_of, len(x0), settings)
    except BudgetSpent:
        pass
    scored = [t for t in trials if t.score is not None and math.isfinite(t.score)]
    best = max(scored, key=lambda t: t.score, default=None)  # type: ignore[arg-type, return-value]
    return RefineResult(best, trials)


async def _nelder_mead(
    score_of: Callable[[np.ndarray], Awaitable[float | None]],
    dimensions: int,
    settings: RefineSettings,
) -> None:
    """scipy's Nelder–Mead, run in a thread; each function value is awaited on this loop."""
    from scipy.optimize import minimize

    loop = asyncio.get_running_loop()
    worst = [0.0]

    def loss(z: np.ndarray) -> float:
        score = asyncio.run_coroutine_threadsafe(score_of(np.array(z)), loop).result()
        if score is None or not math.isfinite(score):
            return worst[0] + 1.0  # worse than anything seen: the simplex moves away
        worst[0] = max(worst[0], -score)
        return -score

    simplex = np.vstack([np.zeros(dimensions), settings.step * np.eye(dimensions)])
    # a thread of its own, not the loop's default executor: the evaluations it waits for
    # may need that executor, and a batch with more children than its workers deadlocked
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nelder-mead") as thread:
        await loop.run_in_executor(
            thread,
            functools.partial(
                minimize,
                loss,
                np.zeros(dimensions),
                method="Nelder-Mead",
                options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-9},
            ),
        )


async def _cma(
    score_of: Callable[[np.ndarray], Awaitable[float | None]],
    dimensions: int,
    settings: RefineSettings,
    budget: int,
    key: str,
) -> None:
    """CMA-ES with ask/tell: each generation is evaluated in parallel. When the strategy
    stops early (scores that are flat near the start: an argmax over priorities often is)
    and calls are left, it restarts from the best point so far with a new seed and twice
    the step (a restart strategy in the manner of IPOP-CMA-ES, Auger & Hansen 2005)."""
    import cma

    seed = int.from_bytes(hashlib.sha256(f"{settings.seed}:{key}".encode()).digest()[:4], "big")
    spent, restart = 0, 0
    centre, best = np.zeros(dimensions), -math.inf
    while budget - spent >= 2:
        strategy = cma.CMAEvolutionStrategy(
            centre,
            settings.step * 2**restart,
            {
                "seed": (seed + restart) % 2**31 or 1,
                "verbose": -9,
                "popsize": max(4, min(8, budget // 2)),
            },
        )
        while spent < budget and not strategy.stop():
            points = strategy.ask()[: budget - spent]
            spent += len(points)
            scores = await asyncio.gather(*(score_of(np.asarray(p)) for p in points))
            for point, score in zip(points, scores, strict=True):
                if score is not None and math.isfinite(score) and score > best:
                    centre, best = np.asarray(point), score
            if len(points) < strategy.popsize:
                return  # the last, partial generation: its trials count, nothing to tell
            finite = [-s for s in scores if s is not None and math.isfinite(s)]
            penalty = (max(finite) if finite else 0.0) + 1.0
            strategy.tell(
                points, [-s if s is not None and math.isfinite(s) else penalty for s in scores]
            )
        restart += 1


SCAN_MAGNITUDES = (0.01, 0.1, 1.0, 10.0)
"""The values a weight at zero is tried at, with both signs: a new term's scale is unknown
(its expression may be of order 1e-2 or 1e2), and scores that are piecewise constant in the
weights (an argmax over priorities) give a small simplex nothing to follow."""
SCAN_FACTORS = (0.5, 2.0, 0.1, 10.0, -1.0)
"""The multiples of a non-zero value that are tried."""


async def _scan(
    score_of: Callable[[np.ndarray], Awaitable[float | None]],
    x0: np.ndarray,
    scale: np.ndarray,
    start_objective: float | None,
    budget: int,
) -> None:
    """Coordinate search on a log scale: the parameters at zero first (the last first: a
    new term's weight is appended), then the others; each tried at `SCAN_MAGNITUDES` (both
    signs) or `SCAN_FACTORS` times its value, in parallel; the best kept, then halved and
    doubled while that helps, before the next parameter."""
    current = x0.copy()
    best, spent = start_objective, [0]
    if best is None:
        best, spent[0] = await score_of(np.zeros(len(x0))), 1
    best = -math.inf if best is None or not math.isfinite(best) else best
    order = [i for i in reversed(range(len(x0))) if x0[i] == 0] + [
        i for i in reversed(range(len(x0))) if x0[i] != 0
    ]

    async def batch(index: int, values: list[float]) -> tuple[float, float] | None:
        values = values[: budget - spent[0]]
        spent[0] += len(values)
        points = []
        for value in values:
            point = current.copy()
            point[index] = value
            points.append((point - x0) / scale)
        scores = await asyncio.gather(*(score_of(z) for z in points))
        pairs = zip(scores, values, strict=True)
        found = [(s, v) for s, v in pairs if s is not None and math.isfinite(s)]
        return max(found) if found else None

    for index in order:
        if spent[0] >= budget:
            break
        value = current[index]
        grid = (
            [sign * m for m in SCAN_MAGNITUDES for sign in (1.0, -1.0)]
            if value == 0
            else [value * f for f in SCAN_FACTORS]
        )
        found = await batch(index, grid)
        if found is None or found[0] <= best:
            continue
        best, current[index] = found
        while spent[0] < budget:  # refine the scale found: halve and double
            found = await batch(index, [current[index] * 0.5, current[index] * 2.0])
            if found is None or found[0] <= best:
                break
            best, current[index] = found
