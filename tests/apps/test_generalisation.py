"""The train/test split of program evaluators: the search never calls ``evaluate_test``;
after it, the best program and the seed are scored once on the held-out instances, and the
report, ``show`` and ``best_program.py`` give both (every evaluator call counted, each
still run in the real sandbox)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import openended
from openended.apps.cli.main import main as cli_main
from openended.apps.evolve import write_best_program
from openended.apps.generalisation import SCORES_NAME, generalisation, held_out_line
from openended.apps.report import write_report
from openended.domains.program.evaluator import ProgramEvaluator
from openended.lm.scripted import ScriptedLM
from tests.domains.test_program import INITIAL, diff

EVALUATOR = '''\
"""Score: value(), capped at 10 on training; held out: value() minus 3."""
import importlib.util


def _load(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate(path):
    v = float(_load(path).value())
    return {"score": min(v, 10.0)}


def evaluate_test(path):
    v = float(_load(path).value())
    return {"score": v - 3.0, "held_out_value": v}
'''


def _value(program: str) -> float:
    namespace: dict = {}
    exec(program, namespace)
    return float(namespace["value"]())


def test_the_test_split_is_scored_only_for_the_best_and_the_seed(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    calls: list[tuple[str, float]] = []  # (stage, the program's value), every evaluator call
    real_call = ProgramEvaluator._call

    async def counted(self, program_text: str, stage: str):
        calls.append((stage, _value(program_text)))
        return await real_call(self, program_text, stage)

    monkeypatch.setattr(ProgramEvaluator, "_call", counted)
    (tmp_path / "initial.py").write_text(INITIAL)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    config = {
        "runs_dir": str(tmp_path / "runs"),
        "name": "split",
        "search": {"batch_size": 4},
        "budget": {"max_lm_calls": 3, "max_seconds": 0},
        "operators": {"rewrite": {"weight": 0}, "funsearch": {"weight": 0}},
        "domain": {
            "name": "program",
            "initial": str(tmp_path / "initial.py"),
            "evaluator": str(tmp_path / "evaluator.py"),
            "sandbox": {"wall_seconds": 5, "cpu_seconds": 5, "memory_mb": 512},
        },
    }
    lm = ScriptedLM(lambda request, sample: diff("    x = 1", f"    x = {2 + request.seed % 5}"))
    result = openended.run(config, lm=lm)
    assert calls and {stage for stage, _ in calls} == {"evaluate"}  # the search: training only
    train_calls = len(calls)

    write_report(result.run_dir)
    path = write_best_program(result.run_dir)
    held_out = generalisation(result.run_dir)
    assert held_out is not None
    tests = [value for stage, value in calls if stage == "evaluate_test"]
    assert len(calls) == train_calls + 2  # one test call each, best and seed; then cached
    best_value = float(result.best["fitness"])
    assert sorted(tests) == sorted([best_value, 1.0])
    assert held_out.best.test == best_value - 3.0 and held_out.seed.test == 1.0 - 3.0
    assert held_out.best.train == best_value and held_out.seed.train == 1.0
    assert held_out.best.test_metrics["held_out_value"] == best_value

    header = path.read_text().splitlines()[0]
    assert f"held-out test score {best_value - 3:g} (seed -2)" in header
    assert "test score" in (result.run_dir / "report.html").read_text()
    assert json.loads((result.run_dir / SCORES_NAME).read_text())["seed"]["test"] == -2.0

    assert cli_main(["show", str(result.run_dir)]) == 0
    assert f"held-out instances: test score {best_value - 3:g}" in capsys.readouterr().out


@pytest.mark.slow
def test_a_held_out_failure_is_reported_and_loses_nothing(tmp_path: Path) -> None:
    (tmp_path / "initial.py").write_text(INITIAL)
    evaluator = tmp_path / "evaluator.py"
    evaluator.write_text(EVALUATOR.replace('return {"score": v - 3.0', 'return {"score": 1 / 0'))
    config = {
        "runs_dir": str(tmp_path / "runs"),
        "name": "broken-test",
        "budget": {"max_lm_calls": 1, "max_seconds": 0},
        "search": {"batch_size": 2},
        "operators": {"rewrite": {"weight": 0}, "funsearch": {"weight": 0}},
        "domain": {
            "name": "program",
            "initial": str(tmp_path / "initial.py"),
            "evaluator": str(evaluator),
        },
    }
    lm = ScriptedLM(lambda request, sample: diff("    x = 1", f"    x = {3 + sample}"))
    result = openended.run(config, lm=lm)
    path = write_best_program(result.run_dir)
    header, program = path.read_text().split("\n", 1)
    assert "the best's test failed: evaluate_test: " in header and "ZeroDivisionError" in header
    assert "def value" in program
    evaluator.unlink()  # the evaluator moved away: the report and the file still come
    assert "not scored (" in (held_out_line(result.run_dir) or "")
    assert write_report(result.run_dir).is_file()
    assert "def value" in write_best_program(result.run_dir).read_text()
