"""Shared by the term and menu tests: a weighted-sum priority function with PARAMS, and a
program domain whose seed it is."""

from pathlib import Path
from typing import Any

import pytest

from openended.domains.program.domain import ProgramConfig, ProgramDomain

PRIORITY = '''def priority(item, bins):
    """Best fit with weights."""
    PARAMS = [0.5, 0.0]
    room = bins - item
    return -room + PARAMS[0] * room**2 + PARAMS[1] * item * room
'''

EVALUATOR = """import importlib.util
import numpy as np


def evaluate(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bins = np.array([3.0, 5.0, 9.0])
    return {"score": float(np.sum(module.priority(2.0, bins)))}
"""


@pytest.fixture
def domain(tmp_path: Path):
    (tmp_path / "initial.py").write_text("import numpy as np\n\n\n" + PRIORITY)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    made = ProgramDomain(
        ProgramConfig(
            initial=tmp_path / "initial.py",
            evaluator=tmp_path / "evaluator.py",
            function="priority",
        )
    )
    yield made
    made.close()


def menu_run_config(tmp_path: Path, operator: str = "menu", lm_calls: int = 2) -> dict[str, Any]:
    """A run's config on `PRIORITY` and `EVALUATOR` (written to `tmp_path`) whose only
    operator is `operator`, with the scan refine stage: batches of 4, `lm_calls` calls."""
    (tmp_path / "initial.py").write_text("import numpy as np\n\n\n" + PRIORITY)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    return {
        "domain": {
            "name": "program",
            "initial": str(tmp_path / "initial.py"),
            "evaluator": str(tmp_path / "evaluator.py"),
            "function": "priority",
            "refine": {"method": "scan", "seed_evaluations": 4},
        },
        "operators": {n: {"weight": 0.0} for n in ("diff", "menu", "menu_uniform", "menu_text")}
        | {operator: {"weight": 1.0}},
        "search": {"batch_size": 4},
        "budget": {"max_lm_calls": lm_calls, "max_evaluations": 0},
    }
