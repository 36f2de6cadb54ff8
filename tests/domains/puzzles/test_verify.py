"""Verification in the sandbox: correct and wrong answers, tampering, vacuity."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from openended.domains.puzzles.p3 import Puzzle, puzzle_from_json
from openended.domains.puzzles.verify import PuzzleVerifier
from openended.sandbox import Limits
from tests.domains.puzzles.fixtures import PUZZLES


@pytest.fixture(scope="module")
def verifier() -> Iterator[PuzzleVerifier]:
    limits = Limits(wall_seconds=2.0, cpu_seconds=2.0, memory_mb=512)
    with PuzzleVerifier(solution_limits=limits, check_limits=limits) as v:
        yield v


def puzzle(i: int) -> Puzzle:
    return puzzle_from_json(PUZZLES[i], where="fixture")


def verify(verifier: PuzzleVerifier, p: Puzzle, body: str):
    return asyncio.run(verifier.verify(p.sat, p.ans_type, p.solution(body)))


def test_reference_solutions_verify_including_huge_integers(verifier: PuzzleVerifier) -> None:
    for i in range(len(PUZZLES)):
        p = puzzle(i)
        verdict = verify(verifier, p, p.sol_bodies[0])
        assert verdict.solved, (p.name, verdict.reason)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("    return 10", "returned False"),
        ("    return '11'", "not of type int"),
        ("    return True", "not of type int"),
        ("    return 1 / 0", "ZeroDivisionError"),
        ("    while True:\n        pass", "timeout"),
        ("    return n +", "SyntaxError"),
        ("    return object()", "not JSON serializable"),
    ],
)
def test_wrong_solutions_say_why(verifier: PuzzleVerifier, body: str, reason: str) -> None:
    verdict = verify(verifier, puzzle(0), body)
    assert not verdict.solved
    assert reason in verdict.reason


def test_a_solution_cannot_patch_the_checker(verifier: PuzzleVerifier) -> None:
    # the solution replaces builtins that sat uses; sat runs in another process
    body = "    import builtins\n    builtins.len = lambda s: 7\n    return 'q'"
    assert not verify(verifier, puzzle(2), body).solved
    assert verify(verifier, puzzle(2), "    return 'qxyzyxq'").solved


def test_a_puzzle_cannot_patch_later_checks(verifier: PuzzleVerifier) -> None:
    tamper = (
        "def sat(x: int):\n    import builtins\n    builtins.sum = lambda li: 30\n    return x == 3"
    )
    assert asyncio.run(verifier.check(tamper, "int", "3")).solved
    p = puzzle(3)  # sum(li) == 30 would now hold for any list, in a reused process
    assert not asyncio.run(verifier.check(p.sat, p.ans_type, "[1, 2, 3]")).solved


@pytest.mark.parametrize(
    ("sat", "ans_type", "vacuous"),
    [
        ("def sat(x: int):\n    return x * x >= 0", "int", "trivial answer 0"),
        ("def sat(s: str):\n    return len(s) < 100", "str", "trivial answer ''"),
        ("def sat(li: List[int]):\n    return all(i > 5 for i in li)", "List[int]", "trivial"),
        ("def sat(x: int):\n    return x != 12345", "int", "trivial answer 0"),
        ("def sat(x: int):\n    return x == x or x > 1", "int", "trivial answer 0"),
        ("def sat(s: str):\n    return len(s) > 0", "str", "all 8 random answers"),
        ("def sat(x: int):\n    return x == 17", "int", None),
        ("def sat(li: List[int]):\n    return len(li) == 3 and sum(li) == 30", "List[int]", None),
    ],
)
def test_vacuous_puzzles_are_caught(
    verifier: PuzzleVerifier, sat: str, ans_type: str, vacuous: str | None
) -> None:
    reason = asyncio.run(verifier.vacuity(sat, ans_type))
    if vacuous is None:
        assert reason is None
    else:
        assert reason is not None and vacuous in reason


def test_reference_answers_of_the_shared_split_verify_when_present() -> None:
    """The whole P3 train split, when it is beside the repository (development only)."""
    path = Path(__file__).resolve().parents[4] / "shared" / "data" / "p3" / "train.json"
    if not path.is_file():
        pytest.skip("the P3 train split is not beside the repository")
    from openended.domains.puzzles.p3 import load_puzzles

    puzzles = load_puzzles(path)[::10]

    async def run() -> list[bool]:
        with PuzzleVerifier() as v:
            items = [
                (p.sat, p.ans_type, p.reference_solutions()[0]) for p in puzzles if p.sol_bodies
            ]
            return [x.solved for x in await v.verify_many(items)]

    assert all(asyncio.run(run()))
