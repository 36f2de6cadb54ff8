from pathlib import Path

import numpy as np
import pytest

from openended.domains.symbolic_regression import (
    SymbolicRegressionConfig,
    SymbolicRegressionDomain,
)
from openended.domains.symbolic_regression.data import DataError, read_csv


def make(**options: object) -> SymbolicRegressionDomain:
    return SymbolicRegressionDomain(SymbolicRegressionConfig(**options))  # type: ignore[arg-type]


async def test_fitness_is_negative_normalised_mse_on_the_validation_split() -> None:
    domain = make(noise=0.0, fit_constants=False, linear_scaling=False)
    mean = float(np.mean(domain.validation.target))
    exact, constant, zero_division = await domain.evaluate(
        ["0.5*m*(v**2 + u**2 + w**2)", str(mean), "m/(v-v)"]
    )
    assert exact.fitness == pytest.approx(0.0, abs=1e-12)
    assert constant.fitness == pytest.approx(-1.0, abs=1e-9)
    assert zero_division.fitness is None
    assert "non-finite" in (zero_division.feedback or "")


async def test_descriptors_and_floor() -> None:
    domain = make(fitness_floor=-5.0, fit_constants=False, linear_scaling=False)
    (evaluation,) = await domain.evaluate(["m**8 * sin(v)"])
    assert evaluation.fitness == -5.0
    assert evaluation.descriptors == (6.0, 3.0)  # nodes; operators *, **, sin
    assert evaluation.metrics["nmse"] > 5


async def test_linear_scaling_makes_a_formula_right_up_to_scale_right() -> None:
    domain = make(noise=0.0, fit_constants=False)
    (scaled,) = await domain.evaluate(["m*(v**2 + u**2 + w**2)"])
    assert scaled.fitness == pytest.approx(0.0, abs=1e-12)
    assert scaled.details["formula"] == "0.5 * (m * (v ** 2 + u ** 2 + w ** 2))"
    assert scaled.details["scale"] == pytest.approx([0.0, 0.5], abs=1e-9)
    assert scaled.genome == "m * (v ** 2 + u ** 2 + w ** 2)"  # the shape: what scaling refits
    fitted = make(noise=0.0, fit_constants=False, genome_form="fitted")
    (written,) = await fitted.evaluate(["m*(v**2 + u**2 + w**2)"])
    assert written.genome == "0.5 * (m * (v ** 2 + u ** 2 + w ** 2))"  # the fitted formula


async def test_free_constants_are_fitted_and_stored() -> None:
    domain = make(noise=0.0, linear_scaling=False)
    (fitted,) = await domain.evaluate(["c0*m*(v**2 + u**2 + w**2) + c1"])
    assert fitted.fitness == pytest.approx(0.0, abs=1e-10)
    assert fitted.details["constants"] == pytest.approx({"c0": 0.5, "c1": 0.0}, abs=1e-6)
    assert "c0" not in fitted.genome and "0.5" in fitted.genome
    off = make(noise=0.0, fit_constants=False)
    (refused,) = await off.evaluate(["c0*m"])
    assert refused.fitness is None and "c0: free constants need fit_constants" in refused.feedback


async def test_unknown_name_is_invalid_with_feedback() -> None:
    (evaluation,) = await make().evaluate(["x * m"])
    assert evaluation.fitness is None
    assert "unknown name 'x'" in (evaluation.feedback or "")


def test_data_is_reproducible_from_its_seed() -> None:
    a, b, c = make(data_seed=1), make(data_seed=1), make(data_seed=2)
    np.testing.assert_array_equal(a.data.target, b.data.target)
    assert not np.array_equal(a.data.target, c.data.target)


def test_default_seeds_parse_and_use_the_variables() -> None:
    domain = make(target="I.12.4")
    seeds = domain.seeds()
    assert seeds and all(domain.parse(s) for s in seeds)
    assert set(domain.data.variables) == {"q1", "epsilon", "r"}


def test_unknown_target_names_the_choices() -> None:
    with pytest.raises(DataError, match=r"unknown Feynman equation 'I\.99'.*I\.13\.4"):
        make(target="I.99")


async def test_csv_data(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = ["a,b,out"] + [f"{a},{b},{a * b + 1}" for a in range(1, 6) for b in range(1, 4)]
    path.write_text("\n".join(rows) + "\n\n")
    domain = make(data=path)
    assert domain.data.variables == ("a", "b")
    (evaluation,) = await domain.evaluate(["a*b + 1"])
    assert evaluation.fitness == pytest.approx(0.0)
    assert domain.prompt_context()["target"] == "out"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "line 1: missing header"),
        ("a,b,y\n1,2,3\n1,x,4\n", r"line 3, column 2 \(b\): 'x' is not a number"),
        ("a,b,y\n1,2,3\n1,2\n", "line 3: expected 3 values, got 2"),
        ("a,b,y\n1,2,3\n1,nan,4\n", r"line 3, column 2 \(b\): value 'nan' is not finite"),
        ("a,2b,y\n1,2,3\n", "line 1, column 2: column name '2b'"),
        ("a,a,y\n1,2,3\n", "duplicate column names"),
        ("a,y\n1,3\n2,3\n", "target column 'y' is constant"),
        ("a,y\n1,3\n", "need at least 2 data rows"),
    ],
)
def test_bad_csv_names_file_line_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_csv(path)
    assert str(path) in str(info.value)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such CSV file"):
        read_csv(tmp_path / "nope.csv")
