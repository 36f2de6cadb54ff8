"""Solve mode: prompts, body extraction, pass@k, and scoring with a scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from math import comb

import pytest

from openended.domains.puzzles.p3 import puzzle_from_json
from openended.domains.puzzles.solve import (
    pass_at_k,
    solution_body,
    solve_prompt,
    solve_puzzles,
)
from openended.domains.puzzles.verify import PuzzleVerifier
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM
from tests.domains.puzzles.fixtures import PUZZLES


@pytest.fixture(scope="module")
def verifier() -> Iterator[PuzzleVerifier]:
    with PuzzleVerifier() as v:
        yield v


@pytest.mark.parametrize(
    ("n", "c", "k"), [(10, 0, 1), (10, 1, 1), (10, 3, 5), (10, 10, 10), (20, 7, 10)]
)
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_needs_enough_samples() -> None:
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k(5, 1, 10)


def test_prompt_ends_right_after_the_docstring_and_numbers_the_functions() -> None:
    puzzle = puzzle_from_json(PUZZLES[0], where="fixture")
    prompt = solve_prompt(puzzle)
    assert prompt.endswith('"""Find x with 2 * x == n + 1."""')
    assert "def sat4(x: int, n=21):" in prompt and "def sol4(n=21):" in prompt
    assert prompt.count("def sat") == 4  # three worked examples, then the puzzle


def test_solution_body_stops_at_the_first_unindented_line() -> None:
    text = "\n    x = 1\n\n    return x\nprint(sol())\ndef more():\n    pass"
    assert solution_body(text) == "\n    x = 1\n\n    return x"


def script(request: GenerationRequest, sample: int) -> str:
    """Right for Double:* on even samples; wrong (or crashing) otherwise."""
    assert request.prompt is not None
    if "2 * x == n + 1" in request.prompt.split("def sat4")[-1]:
        return "\n    return (n + 1) // 2\n" if sample % 2 == 0 else "\n    return n\n"
    return "\n    return 1 / 0\n"


def test_scores_samples_with_the_sandbox(verifier: PuzzleVerifier) -> None:
    puzzles = [puzzle_from_json(p, where="fixture") for p in PUZZLES[:3]]
    lm = ScriptedLM(script)
    report = asyncio.run(solve_puzzles(lm, puzzles, verifier, samples=4, chunk=2))
    assert [r.correct for r in report.results] == [2, 2, 0]
    assert report.results[0].failures == {"wrong answer": 2}
    assert report.results[2].failures == {"exception": 4}
    assert report.pass_at(1) == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert report.solved == 2
    assert lm.calls == 2  # two puzzles per model call
    assert {r.seed for r in lm.requests[:2]} != {None}
    summary = report.summary([1, 4, 10])
    assert "pass@10" not in summary and summary["solved_at_least_once"] == 2
    assert summary["sandbox"] == verifier.solutions.isolation  # how the samples were run


def test_too_long_prompts_count_as_unsolved_without_a_model_call(verifier: PuzzleVerifier) -> None:
    puzzles = [puzzle_from_json(p, where="fixture") for p in (PUZZLES[0], PUZZLES[4])]
    lm = ScriptedLM(script)
    report = asyncio.run(solve_puzzles(lm, puzzles, verifier, samples=2, max_prompt_chars=3000))
    assert [r.name for r in report.results] == ["Double:0", "Huge:0"]  # input order kept
    assert report.results[1].failures == {"prompt too long": 2}
    assert all("Huge" not in (r.prompt or "") for r in lm.requests)
