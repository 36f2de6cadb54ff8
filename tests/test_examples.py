"""The four program examples: each seed declares PARAMS for the refine stage and behaves as
the plain seed at its defaults; each evaluator has a held-out ``evaluate_test`` (real
sandbox)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from openended.domains.program.domain import ProgramConfig, ProgramDomain
from openended.domains.program.refine import declared_parameters

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FUNCTIONS = {
    "bin_packing": "priority",
    "cap_set": "priority",
    "circle_packing": None,
    "function_minimization": None,
}


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.parent.name + path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_seed_declares_parameters_and_each_evaluator_holds_out_a_test_split(
    name: str,
) -> None:
    example = EXAMPLES / name
    config = ProgramConfig(
        initial=example / "initial_program.py",
        evaluator=example / "evaluator.py",
        function=FUNCTIONS[name],
    )
    domain = ProgramDomain(config)
    try:
        program = domain.region.assemble(domain.region.initial)
        begin, end = len(domain.region.prefix), len(program) - len(domain.region.suffix)
        assert declared_parameters(program, begin, end)  # something for the optimiser
        assert domain.fits_parameters and "PARAMS" in domain.prompt_context()["task"]
        assert domain.evaluator.has_test
        train = asyncio.run(domain.evaluator.run(program))
        test = asyncio.run(domain.evaluator.run_test(program))
        assert train.score is not None and test.score is not None, (train.error, test.error)
    finally:
        domain.close()


def test_the_bin_packing_seed_is_best_fit_at_its_defaults() -> None:
    seed = load(EXAMPLES / "bin_packing" / "initial_program.py")
    rng = np.random.default_rng(0)
    for _ in range(200):
        capacity = float(rng.choice([100, 150]))
        bins = np.append(rng.integers(1, capacity + 1, 20).astype(float), capacity)
        item = float(rng.integers(1, bins.max() + 1))
        fits = bins[bins >= item]
        assert np.argmax(seed.priority(item, fits)) == np.argmax(-(fits - item))


def test_the_cap_set_seed_is_the_constant_priority_at_its_defaults() -> None:
    seed = load(EXAMPLES / "cap_set" / "initial_program.py")
    values = {seed.priority(tuple(int(x) for x in v), 4) for v in np.ndindex(3, 3, 3, 3)}
    assert values == {0.0}
