"""Fitting the numbers of a proposed formula: linear scaling, constants, held-out scoring."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from openended.domains.symbolic_regression.fitting import FitError, Split, _written, fit


def split(x: np.ndarray, y: np.ndarray, train: int) -> tuple[Split, Split]:
    return Split({"x": x[:train]}, y[:train]), Split({"x": x[train:]}, y[train:])


def test_linear_scaling_recovers_a_and_b_exactly() -> None:
    x = np.random.default_rng(0).uniform(-3, 3, 200)
    train, validation = split(x, 3 + 2 * np.sin(x), 150)
    result = fit("sin(x)", ["x"], train, validation, fit_constants=False)
    assert result.scale == pytest.approx((3.0, 2.0), abs=1e-12)
    assert result.nmse_validation == pytest.approx(0.0, abs=1e-20)
    assert result.formula == "3 + 2 * sin(x)"


def test_constants_of_a_known_formula_are_recovered_from_noiseless_data() -> None:
    x = np.random.default_rng(1).uniform(0.5, 3, 200)
    train, validation = split(x, 1.7 * np.exp(-0.8 * x) + 0.25 * x**2, 150)
    result = fit(
        "c0*exp(c1*x) + c2*x**2", ["x"], train, validation, linear_scaling=False, restarts=6
    )
    assert result.constants == pytest.approx({"c0": 1.7, "c1": -0.8, "c2": 0.25}, abs=1e-6)
    assert result.nmse_validation < 1e-12
    literals = fit("1.0*exp(-1.0*x) + 1.0*x**2", ["x"], train, validation, linear_scaling=False)
    # (-1.0 is a minus sign and a fitted 1.0)
    assert sorted(abs(v) for v in literals.constants.values()) == pytest.approx(
        [0.25, 0.8, 1.7], abs=1e-6
    )
    assert literals.nmse_validation < 1e-12
    assert "x ** 2" in literals.formula  # an integer exponent is shape, not fitted


def test_the_validation_split_really_is_held_out() -> None:
    """A formula with many free constants fits the training noise and scores worse on the
    validation split than on training; the plain line does not."""
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, 40)
    y = x + rng.normal(0, 0.3, 40)
    train, validation = split(x, y, 12)
    wiggly = " + ".join(f"c{i}*x**{i}" for i in range(1, 10))
    overfit = fit(wiggly, ["x"], train, validation, restarts=2)
    line = fit("x", ["x"], train, validation)
    assert overfit.nmse_train < line.nmse_train  # more constants, better on training
    assert overfit.nmse_validation > 2 * line.nmse_validation  # worse where it was not fitted
    assert overfit.nmse_validation > 3 * overfit.nmse_train


def test_a_fit_that_gives_non_finite_values_is_a_named_failure() -> None:
    x = np.linspace(-1, 1, 50)
    train, validation = split(x, x, 40)
    with pytest.raises(FitError, match="non-finite"):
        fit("log(-(x*x))", ["x"], train, validation)


@pytest.mark.parametrize(
    "source",
    ["k0**2 - k0*x", "-k0 + x", "x + k0", "x - k0 * x / 3", "(x + k0) * (k0 - x)", "-(-k0)"],
)
def test_written_formulas_tidy_the_signs_of_negative_constants(source: str) -> None:
    constants = {"k0": -46.25}
    written = _written(ast.parse(source, mode="eval"), constants, (0.0, 1.0))
    assert "--" not in written and "+ -" not in written and "- -" not in written
    for x in (-1.5, 0.25, 3.0):
        expected = eval(source, {"x": x, **constants})
        assert eval(written, {"x": x}) == pytest.approx(expected, rel=1e-3)  # 4 digits shown
