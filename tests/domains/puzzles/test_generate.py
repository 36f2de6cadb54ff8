"""Generate mode through the search engine, with a scripted model that writes puzzles and
also answers the solver's prompts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from openended import api
from openended.domains.puzzles.solve import FEW_SHOT
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM

GOOD = "x: int, n=6):\n    return x * n == 42\n\ndef sol5(n=6):\n    return 42 // n\n"
VACUOUS = "s: str):\n    return len(s) < 1000\n\ndef sol5():\n    return 'abc'\n"
WRONG = "x: int):\n    return x * 3 == 42\n\ndef sol5():\n    return 13\n"
GARBAGE = "this is not a puzzle at all"
GOOD_TWIN = (
    "y: int, n=6):\n    return y*n == 42   # same puzzle, other names"
    "\n\ndef sol5(n=6):\n    return 7\n"
)
COMPLETIONS = [GOOD, VACUOUS, WRONG, GARBAGE, GOOD_TWIN]


def script(request: GenerationRequest, sample: int) -> str:
    prompt = request.prompt or ""
    if prompt.endswith("def sat5(") or prompt.endswith("def sat2("):  # asked for a puzzle
        index = (request.seed or 0) % len(COMPLETIONS)
        return COMPLETIONS[index]
    # asked to solve a puzzle: right on every other attempt
    last = prompt.split(f"def sat{len(FEW_SHOT) + 1}")[-1]
    if "x * n == 42" in last or "y * n == 42" in last:
        return "\n    return 7\n" if sample % 2 == 0 else "\n    return 0\n"
    return "\n    return None\n"


def test_generate_mode_records_why_each_candidate_failed(tmp_path: Path) -> None:
    lm = ScriptedLM(script)
    config = {
        "runs_dir": str(tmp_path),
        "name": "gen",
        "search": {"batch_size": 10},
        "budget": {"max_lm_calls": 3, "max_seconds": 0},
        "domain": {"name": "puzzles", "max_seeds": 4, "solver_attempts": 4},
    }
    result = api.run(config, lm=lm)
    db = sqlite3.connect(result.run_dir / "run.sqlite")
    rows = db.execute(
        "select operator, status, error, fitness, metrics, completion from candidates"
    ).fetchall()
    seeds = [r for r in rows if r[0] == "seed"]
    children = [r for r in rows if r[0] != "seed"]
    assert len(seeds) == 4 and all(r[1] == "valid" for r in seeds)
    by_completion: dict[str, set[str]] = {}
    for _operator, status, error, fitness, metrics, completion in children:
        by_completion.setdefault(completion, set()).add(status)
        if status == "duplicate":
            continue  # a repeat of an earlier candidate: rejected before evaluation
        if completion == VACUOUS:
            assert status == "invalid" and "vacuous" in error
        if completion == WRONG:
            assert status == "invalid" and "does not solve" in error and "returned False" in error
        if completion == GARBAGE:
            assert status == "parse_error"
        if completion in (GOOD, GOOD_TWIN):
            assert status == "valid"
            m = json.loads(metrics)
            assert m["solver_correct"] == 2 and m["solver_attempts"] == 4
            assert fitness == 1.0  # r = (2 + 1) / (4 + 2) = 1/2: most learnable
    assert set(by_completion) == set(COMPLETIONS)
    # GOOD and its renamed twin are one puzzle: evaluated once, then rejected as duplicates
    twins = [r for r in children if r[5] in (GOOD, GOOD_TWIN)]
    assert sum(r[1] == "valid" for r in twins) == 1
    assert {r[1] for r in twins} == {"valid", "duplicate"}
    assert "invalid" in by_completion[VACUOUS] and "invalid" in by_completion[WRONG]
    # seeds the scripted solver never solves: r = 1/6, fitness 4 r (1 - r)
    assert all(abs(r[3] - 4 * (1 / 6) * (5 / 6)) < 1e-9 for r in seeds)
    # the solver prompts went to the run's model, seeded
    solver_requests = [r for r in lm.requests if r.n == 4]
    assert solver_requests and all(r.seed is not None for r in solver_requests)
