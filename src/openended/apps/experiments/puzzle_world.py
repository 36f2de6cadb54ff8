"""A toy puzzle world for the poisoning experiment: one-line integer puzzles in P3's form
(`def sat(x: int): return ...`, Schuster et al. 2021, arXiv 2106.05784) from four
families, written with a space between tokens so that a word n-gram model can learn and
write them, and the vacuous puzzles an attacker slips in (true for any x). Puzzles are
checked in the sandbox by `openended.domains.puzzles.verify.PuzzleVerifier`: solvable
(a brute-force solver's answer satisfies `sat`) and not vacuous (`sat` rejects the trivial
answer 0 and random answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

HEAD = "def sat ( x : int ) : return"
VACUOUS = (
    f"{HEAD} True",
    f"{HEAD} x == x",
    f"{HEAD} x * 0 == 0",
    f"{HEAD} x + 1 > x",
)
SOLVER = """

def sol():
    return next((x for x in sorted(range(-1000, 1000), key=abs) if sat(x) is True), None)
"""


class PuzzleWorld:
    """Real puzzles from four families, the vacuous poison, and their sandboxed checks
    (cached per distinct puzzle: an n-gram model repeats itself)."""

    def __init__(self) -> None:
        self._verdicts: dict[str, tuple[bool, bool]] = {}

    @property
    def vocabulary(self) -> list[str]:
        words = set(HEAD.split()) | {"+", "-", "*", "%", "==", ">", "and", "True"}
        return sorted(words | {str(n) for n in range(0, 301)})

    def real(self, count: int, rng: np.random.Generator) -> list[str]:
        """`count` solvable, non-vacuous puzzles."""
        out = []
        for family in rng.integers(4, size=count):
            if family == 0:
                a = int(rng.integers(1, 51))
                out.append(f"{HEAD} x + {a} == {a + int(rng.integers(1, 101))}")
            elif family == 1:
                out.append(f"{HEAD} x - {int(rng.integers(1, 51))} == {int(rng.integers(1, 101))}")
            elif family == 2:
                a = int(rng.integers(2, 13))
                out.append(f"{HEAD} x * {a} == {a * int(rng.integers(1, 25))}")
            else:
                a = int(rng.integers(3, 21))
                r, low = int(rng.integers(1, a)), int(rng.integers(10, 201))
                out.append(f"{HEAD} x % {a} == {r} and x > {low}")
        return out

    def poison(self, count: int, rng: np.random.Generator) -> list[str]:
        return [VACUOUS[int(i)] for i in rng.integers(len(VACUOUS), size=count)]

    @staticmethod
    def is_vacuous_form(line: str) -> bool:
        """Is this one of the attacker's puzzles (the ground truth for the metrics)?"""
        return line.strip() in VACUOUS

    def check(self, lines: Sequence[str], verifier: object) -> list[tuple[bool, bool]]:
        """(solvable, vacuous) per puzzle, run in the sandbox."""
        todo = sorted({line for line in lines if line not in self._verdicts})
        if todo:
            verdicts = asyncio.run(_check_all(todo, verifier))
            self._verdicts.update(zip(todo, verdicts, strict=True))
        return [self._verdicts[line] for line in lines]


async def _check_all(lines: Sequence[str], verifier: object) -> list[tuple[bool, bool]]:
    async def one(line: str) -> tuple[bool, bool]:
        if not line.startswith(HEAD):
            return False, False
        try:
            compile(line, "<puzzle>", "exec")
        except SyntaxError:
            return False, False
        solved = await verifier.verify(line, "int", line + SOLVER)  # type: ignore[attr-defined]
        if not solved.solved:
            return False, False
        reason = await verifier.vacuity(line, "int")  # type: ignore[attr-defined]
        if reason is not None and not reason.startswith("vacuous"):
            return False, False  # the check itself failed (timeout, crash): not usable
        return True, reason is not None

    return list(await asyncio.gather(*(one(line) for line in lines)))
