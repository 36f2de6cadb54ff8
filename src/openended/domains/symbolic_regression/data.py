"""Regression data: generated from a Feynman equation with noise, or read from a CSV file."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openended.domains.symbolic_regression.expression import CompiledExpression
from openended.domains.symbolic_regression.feynman import EQUATIONS
from openended.errors import UserError
from openended.textfiles import read_text


class DataError(UserError, ValueError):
    """The regression data is unusable; the message names the file, line and column."""


@dataclass(frozen=True)
class RegressionData:
    """Inputs (one array per variable) and the target values."""

    variables: tuple[str, ...]
    inputs: dict[str, np.ndarray]
    target: np.ndarray
    source: str
    target_name: str = "y"

    @property
    def size(self) -> int:
        return int(self.target.shape[0])


def generate(equation_id: str, *, points: int, noise: float, seed: int) -> RegressionData:
    """Sample `points` inputs uniformly in the equation's ranges; add Gaussian noise with
    standard deviation `noise * std(y)`."""
    if equation_id not in EQUATIONS:
        raise DataError(
            f"unknown Feynman equation {equation_id!r}; available: {', '.join(EQUATIONS)}"
        )
    equation = EQUATIONS[equation_id]
    rng = np.random.default_rng(seed)
    inputs = {name: rng.uniform(lo, hi, size=points) for name, (lo, hi) in equation.ranges.items()}
    clean = CompiledExpression(equation.formula, equation.ranges)(inputs, points)
    target = clean + rng.normal(0.0, noise * float(np.std(clean)), size=points)
    return RegressionData(
        variables=tuple(equation.ranges),
        inputs=inputs,
        target=np.asarray(target, dtype=np.float64),
        source=f"Feynman {equation.id}: {equation.formula}",
    )


def read_csv(path: Path, *, target_column: str | None = None) -> RegressionData:
    """Read a CSV with a header row: one column per input variable and a target column
    (`target_column`, default the last column). Every value must be a finite number."""
    text = read_text(path, what="CSV file", error=DataError)
    with io.StringIO(text, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{path}: line 1: missing header row (column names)")
        names = [h.strip() for h in header]
        for column, name in enumerate(names, start=1):
            if not name.isidentifier():
                raise DataError(
                    f"{path}: line 1, column {column}: column name {name!r} is not a valid "
                    "variable name (letters, digits and _, not starting with a digit)"
                )
        if len(set(names)) != len(names):
            raise DataError(f"{path}: line 1: duplicate column names in {names}")
        target = target_column or names[-1]
        if target not in names:
            raise DataError(f"{path}: target column {target!r} not in header {names}")
        if len(names) < 2:
            raise DataError(f"{path}: need at least one input column and a target column")
        rows: list[list[float]] = []
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise DataError(
                    f"{path}: line {line_number}: expected {len(names)} values, got {len(row)}"
                )
            values = []
            for column, (name, cell) in enumerate(zip(names, row, strict=True), start=1):
                try:
                    value = float(cell)
                except ValueError:
                    raise DataError(
                        f"{path}: line {line_number}, column {column} ({name}): "
                        f"{cell.strip()!r} is not a number"
                    ) from None
                if not math.isfinite(value):
                    raise DataError(
                        f"{path}: line {line_number}, column {column} ({name}): "
                        f"value {cell.strip()!r} is not finite"
                    )
                values.append(value)
            rows.append(values)
    if len(rows) < 2:
        raise DataError(f"{path}: need at least 2 data rows, found {len(rows)}")
    table = np.asarray(rows, dtype=np.float64)
    variables = tuple(n for n in names if n != target)
    y = table[:, names.index(target)]
    if float(np.var(y)) == 0.0:
        raise DataError(f"{path}: target column {target!r} is constant; nothing to fit")
    return RegressionData(
        variables=variables,
        inputs={n: table[:, names.index(n)] for n in variables},
        target=y,
        source=str(path),
        target_name=target,
    )
