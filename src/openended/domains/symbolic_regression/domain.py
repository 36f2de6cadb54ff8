"""Symbolic regression: find a formula that fits data (the domain of LMX, Meyerson et al.
2023, arXiv 2302.12170). Genomes are expressions in the input variables."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

import openended.domains.symbolic_regression.data as regression_data
from openended.domains.base import Axis, Evaluation
from openended.domains.symbolic_regression.expression import (
    CompiledExpression,
    ExpressionError,
    parse_expression,
)
from openended.domains.symbolic_regression.feynman import EQUATIONS
from openended.domains.symbolic_regression.fitting import (
    PARAMETER,
    FitError,
    Scaling,
    Split,
    fit,
)


class SymbolicRegressionConfig(BaseModel):
    """Options of the ``[domain]`` table for ``name = "symbolic_regression"``."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        "I.13.4", description=f"built-in Feynman equation: one of {', '.join(EQUATIONS)}"
    )
    data: Path | None = Field(None, description="CSV file; overrides `target` when given")
    target_column: str | None = Field(None, description="CSV target column (default: last)")
    points: int = Field(256, ge=2, le=1_000_000, description="generated data points")
    noise: float = Field(0.01, ge=0, description="noise std relative to std(y)")
    data_seed: int = Field(0, description="seed of the generated data")
    seeds: list[str] | None = Field(None, description="initial expressions")
    max_size: int = Field(40, ge=3, description="largest expression (AST nodes) on the grid")
    size_bins: int = Field(13, ge=1)
    operator_bins: int = Field(8, ge=1)
    fitness_floor: float = Field(-10.0, lt=0, description="fitness never goes below this")
    fit_constants: bool = Field(
        True,
        description="fit every numeric constant and free parameter c0, c1, ... of a formula "
        "to the training split (off: score formulas as written)",
    )
    linear_scaling: Scaling = Field(
        "terms",
        description="fit the target as a + b * formula in closed form (global, Keijzer 2003), "
        "or as a + b1 * term1 + b2 * term2 + ... over the formula's top-level terms (terms, "
        "multigene GP's linear combination, Searson et al. 2010), or not at all (off); "
        "true and false mean global and off",
    )

    @field_validator("linear_scaling", mode="before")
    @classmethod
    def _scaling_from_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            return "global" if value else "off"
        return value

    genome_form: Literal["shape", "fitted"] = Field(
        "shape",
        description="what a fitted formula is stored and shown to the model as: its shape, "
        "without the intercept and the terms' multipliers that the scaling refits (shape; the "
        "fitted formula is in the candidate's details), or the formula with its fitted numbers",
    )
    validation_share: float = Field(
        0.25, gt=0, lt=1, description="data held out to score fitted formulas"
    )
    fit_restarts: int = Field(3, ge=0, description="random restarts of the constant fit")


class SymbolicRegressionDomain:
    """Fit `y = f(x1, ..., xn)`.

    Fitness is the negative normalised mean squared error, ``-MSE / Var(y)`` (0 is a
    perfect fit; predicting the mean gives -1), clipped below at `fitness_floor`.
    Descriptors: expression size (AST nodes) and the number of distinct operators and
    functions used.
    """

    name: ClassVar[str] = "symbolic_regression"
    Config: ClassVar[type[BaseModel]] = SymbolicRegressionConfig
    default_operator_weights: ClassVar[dict[str, float]] = {"lmx": 0.5, "mutation": 0.5}

    def __init__(self, config: SymbolicRegressionConfig, *, base_dir: Path | None = None) -> None:
        self.config = config
        if config.data is not None:
            path = config.data if config.data.is_absolute() else (base_dir or Path()) / config.data
            self.data = regression_data.read_csv(path, target_column=config.target_column)
            self._description = f"data from {path.name}"
        else:
            self.data = regression_data.generate(
                config.target, points=config.points, noise=config.noise, seed=config.data_seed
            )
            self._description = EQUATIONS[config.target].description
        self.train, self.validation = _split(self.data, config.validation_share, config.data_seed)
        self.fitness_floor = config.fitness_floor
        self.axes = (
            Axis("size", 1, config.max_size + 1, config.size_bins, "AST nodes in the expression"),
            Axis(
                "operators",
                0,
                config.operator_bins,
                config.operator_bins,
                "distinct operators and functions used",
            ),
        )

    @property
    def prompt_dir(self) -> Path | None:
        return Path(__file__).parent / "prompts"

    def prompt_context(self) -> Mapping[str, Any]:
        return {
            "target": self.data.target_name,
            "variables": ", ".join(self.data.variables),
            "description": self._description,
            "fitted": self.config.fit_constants,
        }

    def seeds(self) -> Sequence[str]:
        if self.config.seeds:
            return list(self.config.seeds)
        # a small generic basis, as GP's first generation would hold: variables, their
        # squares, a product and the sum (constants and scale are fitted)
        names = list(self.data.variables)
        seeds = [*names[:3], *(f"{name}**2" for name in names[:3])]
        if len(names) >= 2:
            seeds.append(f"{names[0]}*{names[1]}")
            seeds.append(" + ".join(names))
        return seeds

    def parse(self, completion: str) -> str | None:
        try:
            return parse_expression(completion, self.data.variables)
        except ExpressionError:
            return None

    def evaluate_one(self, genome: str) -> Evaluation:
        """Fitness: minus the normalised MSE on the validation split, of the formula with
        its constants fitted on the training split (when `fit_constants`), else as written,
        inside the `linear_scaling`. The fitted formula (or its shape, by `genome_form`)
        becomes the genome; the fitted formula is kept in the details."""
        names = list(self.data.variables)
        try:
            expression = CompiledExpression(genome, [*names, *_free_parameters(genome)])
        except ExpressionError as exc:
            return Evaluation.invalid(str(exc))
        except RecursionError:
            return Evaluation.invalid("expression nested too deeply")
        if expression.free and not self.config.fit_constants:
            return Evaluation.invalid(
                f"{', '.join(sorted(expression.free))}: free constants need fit_constants = true"
            )
        shape = {"size": expression.size, "operators": len(expression.operators)}
        try:
            fitted = fit(
                genome,
                names,
                self.train,
                self.validation,
                scaling=self.config.linear_scaling,
                fit_constants=self.config.fit_constants,
                restarts=self.config.fit_restarts,
                seed=_stable_seed(genome),
            )
        except FitError as exc:
            return Evaluation.invalid(str(exc), **shape)
        except (RecursionError, OverflowError, MemoryError):
            return Evaluation.invalid("constant fitting failed (the formula is too large)")
        nmse = fitted.nmse_validation
        stored = fitted.shape if self.config.genome_form == "shape" else fitted.formula
        return Evaluation(
            fitness=max(-nmse, self.fitness_floor),
            descriptors=(float(expression.size), float(len(expression.operators))),
            metrics={"nmse": nmse, "nmse_train": fitted.nmse_train, **shape},
            genome=stored if stored != genome else None,
            details={
                "formula": fitted.formula,
                "constants": fitted.constants,
                "scale": list(fitted.scale),
            },
        )

    async def evaluate(self, genomes: Sequence[str]) -> list[Evaluation]:
        return await asyncio.to_thread(lambda: [self.evaluate_one(g) for g in genomes])


def _split(data: regression_data.RegressionData, share: float, seed: int) -> tuple[Split, Split]:
    """A training and a validation split of the data (a seeded permutation)."""
    order = np.random.default_rng([seed, 7]).permutation(data.size)
    held = max(1, round(share * data.size))
    parts = []
    for index in (order[held:], order[:held]):
        inputs = {name: values[index] for name, values in data.inputs.items()}
        parts.append(Split(inputs, data.target[index]))
    return parts[0], parts[1]


def _free_parameters(genome: str) -> list[str]:
    return sorted(set(PARAMETER.findall(genome)))


def _stable_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
