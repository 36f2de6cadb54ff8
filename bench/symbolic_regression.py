"""Symbolic regression side by side: the embedded model without and with fitted constants
(global or per-term linear scaling; the formula or its shape as the genome), gplearn and
Operon, on the built-in Feynman equations, the same noisy data and validation split, the
same number of evaluated formulas, several seeds.

    python bench/symbolic_regression.py [--evaluations 120] [--seeds 0 1 2] [--out FILE]

An *evaluation* is one formula scored on the data (its constants fitted first, where the
method fits constants): openended's `budget.max_evaluations`; gplearn's population size
times generations; Operon's evaluated individuals (its population plus offspring per
generation; Operon tunes constants with a few Levenberg–Marquardt steps per individual, as
openended fits them with least squares). A formula *recovers* an equation when its
normalised MSE on the held-out validation split is at most 1e-3 (the data's noise is 1%
of std(y), an NMSE of 1e-4); *exact* when sympy also finds it equal to the true formula
once constants are cleaned (each constant whose removal keeps the formula recovering is
dropped; the rest are rounded to 2 significant digits).
The `*-large` rows give the peers `--large` evaluations (default 10,000) for context.
Rows are printed as they finish and written to `--out` (JSON lines) so that an interrupted
run can be resumed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sympy

import openended
from openended.config import load_config
from openended.domains.symbolic_regression.domain import (
    SymbolicRegressionConfig,
    SymbolicRegressionDomain,
)
from openended.domains.symbolic_regression.feynman import EQUATIONS
from openended.lm.factory import build_language_model

THRESHOLD = 1e-3
FUNCTIONS = {
    "sqrt": sympy.sqrt,
    "exp": sympy.exp,
    "log": sympy.log,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "abs": sympy.Abs,
    "tanh": sympy.tanh,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "pi": sympy.pi,
    "e": sympy.E,
}


def data_of(equation: str, **options: object) -> SymbolicRegressionDomain:
    return SymbolicRegressionDomain(SymbolicRegressionConfig(target=equation, **options))


def matrix(domain: SymbolicRegressionDomain, part: str) -> tuple[np.ndarray, np.ndarray]:
    split = getattr(domain, part)
    names = list(domain.data.variables)
    return np.column_stack([split.inputs[n] for n in names]), split.target


def nmse(prediction: np.ndarray, target: np.ndarray) -> float:
    if not np.all(np.isfinite(prediction)):
        return math.inf
    return float(np.mean((prediction - target) ** 2) / np.var(target))


def exact(formula: str | None, equation: str) -> bool:
    """Sympy equality with the true formula once constants are cleaned: each constant whose
    removal (set to 0) keeps the formula recovering is dropped, the rest are rounded to 2
    significant digits."""
    if not formula:
        return False
    domain = data_of(equation)
    symbols = {n: sympy.Symbol(n) for n in domain.data.variables}
    try:
        found = sympy.sympify(formula, locals={**symbols, **FUNCTIONS})
        truth = sympy.sympify(EQUATIONS[equation].formula, locals={**symbols, **FUNCTIONS})
        for constant in sorted(found.atoms(sympy.Float), key=lambda f: abs(float(f))):
            without = found.xreplace({constant: 0})
            if nmse_of_formula(str(without), domain) <= THRESHOLD:
                found = without
        rounded = {
            f: sympy.nsimplify(float(f"{float(f):.2g}"), rational=True)
            for f in found.atoms(sympy.Float)
        }
        return bool(sympy.simplify(found.xreplace(rounded) - truth) == 0)
    except (sympy.SympifyError, TypeError, ValueError, AttributeError, RecursionError):
        return False


OPENENDED = {
    "plain": {"fit_constants": False, "linear_scaling": "off"},
    "fit-global": {"linear_scaling": "global"},
    "fit-terms": {"linear_scaling": "terms"},
    "fit-shape": {"linear_scaling": "terms", "genome_form": "shape"},
}
"""openended's variants: numbers as written; constants fitted inside a ``a + b·f`` scaling;
inside ``a + Σ b_i·t_i`` over the formula's terms; the same with the formula's shape as the
genome the model sees."""


def run_openended(equation: str, seed: int, evaluations: int, method: str, lm, root: Path):
    options = OPENENDED[method]
    config = load_config(
        {
            "runs_dir": str(root),
            "name": f"{equation}-{seed}-{method}",
            "seed": seed,
            "budget": {"max_evaluations": evaluations, "max_seconds": 0},
            "domain": {"name": "symbolic_regression", "target": equation, **options},
        }
    )
    result = openended.run(config, lm=lm)
    best = result.best
    formula = best.genome if best is not None else None
    domain = data_of(equation, **options)
    if formula and options.get("genome_form") == "shape":  # the fitted formula of the shape
        formula = domain.evaluate_one(formula).details.get("formula", formula)
    score = nmse_of_formula(formula, domain) if formula else math.inf
    return formula, score


def nmse_of_formula(formula: str, domain: SymbolicRegressionDomain) -> float:
    """The validation NMSE of a formula as written (its constants already fitted)."""
    names = list(domain.data.variables)
    symbols = [sympy.Symbol(n) for n in names]
    try:
        expression = sympy.sympify(
            formula, locals={**dict(zip(names, symbols, strict=True)), **FUNCTIONS}
        )
        function = sympy.lambdify(symbols, expression, "numpy")
        x, y = matrix(domain, "validation")
        with np.errstate(all="ignore"):
            prediction = np.broadcast_to(function(*x.T), y.shape).astype(float)
    except Exception:  # a formula numpy cannot evaluate scores worst
        return math.inf
    return nmse(prediction, y)


GPLEARN_FUNCTIONS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "sqrt": lambda a: sympy.sqrt(sympy.Abs(a)),
    "log": lambda a: sympy.log(sympy.Abs(a)),
    "neg": lambda a: -a,
    "inv": lambda a: 1 / a,
    "sin": sympy.sin,
    "cos": sympy.cos,
}


def run_gplearn(equation: str, seed: int, evaluations: int, population: int):
    from gplearn.genetic import SymbolicRegressor

    domain = data_of(equation)
    names = list(domain.data.variables)
    x, y = matrix(domain, "train")
    generations = max(1, evaluations // population)
    model = SymbolicRegressor(
        population_size=population,
        generations=generations,
        function_set=("add", "sub", "mul", "div", "sqrt", "log", "sin", "cos"),
        random_state=seed,
        n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y)
        xv, yv = matrix(domain, "validation")
        score = nmse(model.predict(xv), yv)
    symbols = {f"X{i}": sympy.Symbol(n) for i, n in enumerate(names)}
    try:
        formula = str(sympy.sympify(str(model._program), locals={**symbols, **GPLEARN_FUNCTIONS}))
    except (sympy.SympifyError, TypeError):
        formula = str(model._program)
    return formula, score


def run_operon(equation: str, seed: int, evaluations: int, population: int):
    from pyoperon.sklearn import SymbolicRegressor

    domain = data_of(equation)
    names = list(domain.data.variables)
    x, y = matrix(domain, "train")
    generations = max(1, evaluations // population - 1)
    model = SymbolicRegressor(
        population_size=population,
        pool_size=population,
        generations=generations,
        max_evaluations=10**9,
        optimizer_iterations=5,
        allowed_symbols="add,sub,mul,div,square,sqrt,exp,log,sin,cos,constant,variable",
        random_state=seed,
        n_threads=1,
    )
    model.fit(x, y)
    xv, yv = matrix(domain, "validation")
    score = nmse(model.predict(xv), yv)
    formula = model.get_model_string(model.model_, 6, names).replace("^", "**")
    return formula, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--equations", nargs="*", default=list(EQUATIONS)[:10])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--evaluations", type=int, default=120)
    parser.add_argument("--population", type=int, default=24, help="GP population size")
    parser.add_argument(
        "--large", type=int, default=10_000, help="evaluations of the peers' *-large rows"
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=[*OPENENDED, "gplearn", "operon", "gplearn-large", "operon-large"],
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-symbolic-regression.jsonl"))
    args = parser.parse_args()

    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            done[(row["method"], row["equation"], row["seed"])] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lm = None
    methods: dict[str, Callable] = {
        "gplearn": lambda e, s: run_gplearn(e, s, args.evaluations, args.population),
        "operon": lambda e, s: run_operon(e, s, args.evaluations, args.population),
        "gplearn-large": lambda e, s: run_gplearn(e, s, args.large, 10 * args.population),
        "operon-large": lambda e, s: run_operon(e, s, args.large, 10 * args.population),
    }
    with tempfile.TemporaryDirectory() as root, args.out.open("a") as out:
        for method in args.methods:
            for equation in args.equations:
                for seed in args.seeds:
                    if (method, equation, seed) in done:
                        continue
                    start = time.perf_counter()
                    if method in OPENENDED:
                        if lm is None:
                            lm = build_language_model(load_config({}).model)
                        formula, score = run_openended(
                            equation, seed, args.evaluations, method, lm, Path(root)
                        )
                    else:
                        formula, score = methods[method](equation, seed)
                    row = {
                        "method": method,
                        "equation": equation,
                        "seed": seed,
                        "nmse": score,
                        "recovered": score <= THRESHOLD,
                        "exact": score <= THRESHOLD and exact(formula, equation),
                        "formula": formula,
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                    done[(method, equation, seed)] = row
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(
                        f"{method:13s} {equation:9s} seed {seed}  nmse {score:9.3g}  "
                        f"{'recovered' if row['recovered'] else '         '} "
                        f"{'exact' if row['exact'] else '     '}  {row['seconds']:6.1f}s  "
                        f"{(formula or '')[:70]}",
                        flush=True,
                    )
    for row in done.values():  # the checks may have changed since a row was written
        if row["method"] in OPENENDED and row["formula"]:
            row["nmse"] = nmse_of_formula(row["formula"], data_of(row["equation"]))
            row["recovered"] = row["nmse"] <= THRESHOLD
        row["exact"] = row["recovered"] and exact(row["formula"], row["equation"])
    print(f"\n{args.evaluations} evaluations per run, seeds {args.seeds}")
    print(f"{'method':13s}  recovered  exact  median NMSE  mean s/run")
    for method in args.methods:
        rows = [r for (m, _, _), r in done.items() if m == method]
        if not rows:
            continue
        print(
            f"{method:13s}  {sum(r['recovered'] for r in rows):3d}/{len(rows):<3d}   "
            f"{sum(r['exact'] for r in rows):3d}    "
            f"{statistics.median(r['nmse'] for r in rows):9.3g}"
            f"   {statistics.mean(r['seconds'] for r in rows):8.1f}"
        )
    for equation in args.equations:
        cells = []
        for method in args.methods:
            rows = [r for (m, e, _), r in done.items() if m == method and e == equation]
            cells.append(f"{method} {sum(r['recovered'] for r in rows)}/{len(rows)}")
        print(f"  {equation:9s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
