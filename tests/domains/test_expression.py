import numpy as np
import pytest

from openended.domains.symbolic_regression.expression import (
    CompiledExpression,
    ExpressionError,
    normalise,
    parse_expression,
)

VARIABLES = ["m", "v", "u", "w"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" m*v**2\ny = 3", "m * v ** 2"),
        ("y = 2m v^2.", "2 * m * v ** 2"),
        ("`0.5*m*(v^2+u^2)`", "0.5 * m * (v ** 2 + u ** 2)"),
        ("(m+v)(u+w)", "(m + v) * (u + w)"),
        ("m(v+1)", "m * (v + 1)"),
        ("1e-3*m", "0.001 * m"),
        ("m v", "m * v"),
        ("m × v − u", "m * v - u"),
        ("v²·m", "v ** 2 * m"),
        ("(m + v", "m + v"),
        ("m*v +", "m * v"),
        ("(m*v)^2 + u = (m*v)^2", "(m * v) ** 2 + u"),
        ("m * (v + u). 3.5E+17", "m * (v + u)"),
        ("f(m) = m*2", "m * 2"),
    ],
)
def test_parse_repairs_what_small_models_write(text: str, expected: str) -> None:
    assert parse_expression(text, VARIABLES) == expected


@pytest.mark.parametrize("text", ["", "   ", ")(", "m +* v", "'''"])
def test_parse_rejects_non_expressions(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(text, VARIABLES)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("m.__class__", "Attribute"),
        ("(lambda: 1)()", "not allowed"),
        ("[m for m in v]", "ListComp"),
        ("q * m", "unknown name 'q'"),
        ("m if v else u", "IfExp"),
        ("'a' * 3", "not a number"),
        ("sin(m, v)", "exactly one argument"),
        ("m // v", "FloorDiv"),
        ("m < v", "Compare"),
        ("True * m", "not a number"),
    ],
)
def test_whitelist_rejects_everything_else(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment):
        CompiledExpression(text, VARIABLES)


def test_normalise_keeps_scientific_notation_and_names_with_digits() -> None:
    assert normalise("2.5e-3*x2 + 3x", ["x2", "x"]) == "2.5e-3*x2 + 3*x"


def test_evaluation_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    data = {name: rng.uniform(1, 5, 50) for name in VARIABLES}
    expr = CompiledExpression("0.5*m*(v**2 + u**2 + w**2) + sqrt(m)/exp(-u) - ln(w)", VARIABLES)
    expected = (
        0.5 * data["m"] * (data["v"] ** 2 + data["u"] ** 2 + data["w"] ** 2)
        + np.sqrt(data["m"]) / np.exp(-data["u"])
        - np.log(data["w"])
    )
    np.testing.assert_allclose(expr(data, 50), expected)
    assert expr.operators == {"*", "+", "**", "sqrt", "/", "exp", "neg", "-", "log"}


def test_constants_broadcast_and_huge_powers_are_nan() -> None:
    data = {"m": np.arange(4.0)}
    assert CompiledExpression("2*pi", ["m"])(data, 4).shape == (4,)
    assert np.all(np.isnan(CompiledExpression("m**(10**9)", ["m"])(data, 4)))


def test_size_counts_nodes() -> None:
    assert CompiledExpression("m", VARIABLES).size == 1
    assert CompiledExpression("m*v", VARIABLES).size == 3
    assert CompiledExpression("-sin(m)", VARIABLES).size == 3
