"""Fitting the numbers of a proposed formula: linear scaling, constants, held-out scoring."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from openended.domains.symbolic_regression.fitting import FitError, Split, _terms, _written, fit


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
    result = fit("c0*exp(c1*x) + c2*x**2", ["x"], train, validation, scaling="off", restarts=6)
    assert result.constants == pytest.approx({"c0": 1.7, "c1": -0.8, "c2": 0.25}, abs=1e-6)
    assert result.nmse_validation < 1e-12
    literals = fit("1.0*exp(-1.0*x) + 1.0*x**2", ["x"], train, validation, scaling="off")
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
    body = ast.parse(source, mode="eval")
    written = _written(body, constants, (0.0, [1.0] * len(_terms(body.body))))
    assert "--" not in written and "+ -" not in written and "- -" not in written
    for x in (-1.5, 0.25, 3.0):
        expected = eval(source, {"x": x, **constants})
        assert eval(written, {"x": x}) == pytest.approx(expected, rel=1e-3)  # 4 digits shown


def test_term_scaling_fits_one_coefficient_per_term_in_closed_form() -> None:
    """``a + Σ b_i·t_i`` over the top-level terms: a formula with the right terms but the
    wrong weights is exact, where one global ``a + b·f`` is not."""
    x = np.random.default_rng(3).uniform(-3, 3, 200)
    train, validation = split(x, 3 + 2 * np.sin(x) - 0.5 * x**2, 150)
    terms = fit("sin(x) + x**2", ["x"], train, validation, fit_constants=False)
    assert terms.scale == pytest.approx((3.0, 2.0, -0.5), abs=1e-9)
    assert terms.nmse_validation < 1e-20
    assert terms.formula == "3 + 2 * sin(x) - 0.5 * x ** 2"
    one = fit("sin(x) + x**2", ["x"], train, validation, fit_constants=False, scaling="global")
    assert len(one.scale) == 2 and one.nmse_validation > 0.01


def test_term_scaling_rewards_each_right_term_found() -> None:
    """On kinetic energy m(v² + u² + w²)/2, each right term found lowers the error: the
    search gets a gradient towards the whole formula."""
    rng = np.random.default_rng(4)
    m, v, u, w = (rng.uniform(1, 5, 200) for _ in range(4))
    y = 0.5 * m * (v**2 + u**2 + w**2)
    train = Split({"m": m[:150], "v": v[:150], "u": u[:150], "w": w[:150]}, y[:150])
    validation = Split({"m": m[150:], "v": v[150:], "u": u[150:], "w": w[150:]}, y[150:])
    variables = ["m", "v", "u", "w"]
    errors = [
        fit(formula, variables, train, validation).nmse_validation
        for formula in ("m*v**2", "m*v**2 + m*u**2", "m*v**2 + m*u**2 + m*w**2")
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-20


def test_the_shape_drops_what_the_scaling_refits_and_fits_back_to_the_same_formula() -> None:
    """The shape has no intercept and no leading multiplier per term (term scaling refits
    them), keeps the other constants, and refitting it gives the same error."""
    rng = np.random.default_rng(5)
    m, v, u = (rng.uniform(1, 5, 200) for _ in range(3))
    y = 2.0 - 3.0 * m * v**2 + 0.7 * u * (m + 0.6)
    variables = ["m", "v", "u"]
    train = Split({"m": m[:150], "v": v[:150], "u": u[:150]}, y[:150])
    validation = Split({"m": m[150:], "v": v[150:], "u": u[150:]}, y[150:])
    fitted = fit("5 + 1.5*m*v**2 + u*(m + 1.0)", variables, train, validation, restarts=4)
    assert fitted.nmse_validation < 1e-12
    tree = ast.parse(fitted.shape, mode="eval")
    numbers = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert sorted(numbers) == pytest.approx([0.6, 2.0], abs=1e-3)  # (m + 0.6) and v**2
    assert fitted.shape.startswith("-")  # the first term keeps the sign of its multiplier
    again = fit(fitted.shape, variables, train, validation, fit_constants=False)
    assert again.nmse_validation < 1e-9
    assert fit(fitted.shape, variables, train, validation, scaling="global").nmse_train > 1e-3
