"""Run the user's evaluator on candidate programs inside the sandbox, with cascade stages.

The evaluator is a Python file with ``evaluate(program_path) -> {"score": float, ...}``
and optionally ``evaluate_stage1``, ``evaluate_stage2``, ... (cheap checks that run
first; a candidate that fails a stage is not evaluated further). ``evaluate`` scores the
training instances, the only ones the search sees; an optional ``evaluate_test`` scores
held-out instances, and runs only after a search, on its best program and its seed (the
generalisation column of the report, ``show`` and ``best_program.py``). The evaluator and the
candidate both run in the sandbox: the candidate is written to the worker's scratch
folder and the evaluator imports it from there.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openended.errors import UserError
from openended.sandbox import Limits, Sandbox
from openended.textfiles import read_text

DRIVER = """

def __openended_run(__program_text, __stage):
    import os as __os
    with open("candidate.py", "w") as __f:
        __f.write(__program_text)
    return globals()[__stage](__os.path.abspath("candidate.py"))
"""


TEST_STAGE = "evaluate_test"


class EvaluatorError(UserError, ValueError):
    """The evaluator file is unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class StageOutcome:
    """The merged result of the stages a candidate went through."""

    score: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    stage: str = ""
    traceback: str | None = None
    """The evaluator's traceback when it raised, its frames named by the evaluator file."""


def top_level_imports(source: str) -> list[str]:
    """Modules the evaluator imports at its top level (``numpy``, ``scipy.optimize``):
    the sandbox workers import them once, so that each evaluation does not."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [n for n in dict.fromkeys(names) if n != "__future__"]


def has_function(source: str, name: str) -> bool:
    """Whether `source` defines a top-level function `name`."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def find_stages(source: str, path: Path) -> list[str]:
    """`evaluate_stage1`, `evaluate_stage2`, ... (in order) followed by `evaluate`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise EvaluatorError(f"{path}: line {exc.lineno}: syntax error: {exc.msg}") from None
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    stages = sorted(
        (n for n in names if re.fullmatch(r"evaluate_stage\d+", n)),
        key=lambda n: int(n.removeprefix("evaluate_stage")),
    )
    if "evaluate" in names:
        stages.append("evaluate")
    if not stages:
        raise EvaluatorError(
            f"{path}: defines no `evaluate(program_path)` function (and no evaluate_stageN)"
        )
    return stages


class ProgramEvaluator:
    """Scores whole programs with the user's evaluator in a `Sandbox`.

    Args:
        path: the evaluator file.
        limits: sandbox limits for each stage.
        workers: sandbox workers (evaluations in parallel).
        thresholds: minimum score to pass each `evaluate_stageN` (missing: any score).
        isolation: sandbox isolation.
    """

    def __init__(
        self,
        path: Path,
        *,
        limits: Limits,
        workers: int,
        thresholds: Sequence[float],
        isolation: str = "auto",
    ) -> None:
        self.path = Path(path)
        source = read_text(self.path, what="evaluator", error=EvaluatorError)
        self.stages = find_stages(source, self.path)
        self.has_test = has_function(source, TEST_STAGE)
        self.source_lines = source.count("\n") + 1
        self.thresholds = list(thresholds)
        self.program = source + DRIVER
        self.sandbox = Sandbox(
            limits=limits,
            workers=workers,
            isolation=isolation,  # type: ignore[arg-type]
            preload=top_level_imports(source),
        )

    def close(self) -> None:
        self.sandbox.close()

    def _evaluator_traceback(self, trace: str | None) -> str | None:
        """The sandbox's traceback with the evaluator's frames named by its file (the
        appended driver's frames dropped)."""
        if not trace:
            return None
        lines = trace.splitlines()
        kept: list[str] = []
        skip = False
        for line in lines[1:]:
            match = re.match(r'  File "<program>", line (\d+)', line)
            if match:
                skip = int(match.group(1)) > self.source_lines
                if not skip:
                    kept.append(line.replace('"<program>"', f'"{self.path}"'))
            elif line.startswith("    ") and skip:
                continue
            else:
                kept.append(line)
        return "\n".join(kept)

    async def _call(self, program_text: str, stage: str) -> tuple[StageOutcome | None, dict]:
        """Run one stage: a failed outcome, or None and the stage's checked dict."""
        result = await self.sandbox.run(self.program, "__openended_run", [program_text, stage])
        if result.error is not None:
            return StageOutcome(
                None,
                {},
                f"{stage}: {result.error}",
                stage,
                self._evaluator_traceback(result.error.traceback),
            ), {}
        value = result.value
        problem = _check(value)
        if problem:
            return StageOutcome(None, {}, f"{stage}: {problem}", stage), {}
        assert isinstance(value, dict)
        return None, value

    async def run_stage(self, program_text: str, stage: str) -> StageOutcome:
        """One stage alone, its score whatever the stage's threshold (a refine objective)."""
        failed, value = await self._call(program_text, stage)
        if failed is not None:
            return failed
        metrics = {k: float(v) for k, v in value.items() if _is_number(v)}
        return StageOutcome(float(value["score"]), metrics, None, stage)

    async def run_test(self, program_text: str) -> StageOutcome:
        """The program's score on the held-out instances (``evaluate_test``); never called
        during a search."""
        if not self.has_test:
            raise EvaluatorError(f"{self.path}: defines no `{TEST_STAGE}(program_path)`")
        return await self.run_stage(program_text, TEST_STAGE)

    async def run(self, program_text: str) -> StageOutcome:
        metrics: dict[str, float] = {}
        score: float | None = None
        for index, stage in enumerate(self.stages):
            failed, value = await self._call(program_text, stage)
            if failed is not None:
                return StageOutcome(None, metrics, failed.error, stage, failed.traceback)
            score = float(value["score"])
            metrics.update({k: float(v) for k, v in value.items() if _is_number(v)})
            if stage != "evaluate" and stage != self.stages[-1]:
                threshold = self.thresholds[index] if index < len(self.thresholds) else None
                if value.get("passed") is False or (threshold is not None and score < threshold):
                    reason = value.get("error") or (
                        f"score {score:.6g} below the stage threshold {threshold}"
                        if threshold is not None and score < threshold
                        else "did not pass"
                    )
                    return StageOutcome(None, metrics, f"rejected at {stage}: {reason}", stage)
        return StageOutcome(score, metrics, None, self.stages[-1])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"the evaluator returned {type(value).__name__}, not a dict with a 'score'"
    if value.get("error"):
        return str(value["error"])[:500]
    if "score" not in value:
        return f"the evaluator's dict has no 'score' (keys: {', '.join(map(str, value))})"
    if not _is_number(value["score"]):
        return f"score {value['score']!r} is not a finite number"
    return None
