"""Verify puzzle solutions and reject vacuous puzzles, in the sandbox.

A solution is run alone in one sandbox pool; its answer comes back as a JSON value and
is checked with ``sat`` in a second pool. So a solution cannot patch ``sat``, builtins
or the checker (it never shares a process with them), and since the sandbox runs every
program in a fresh process, no model-written code can tamper with the runs after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openended.domains.puzzles.p3 import random_answers, trivial_answers, type_check_source
from openended.sandbox import Limits, Sandbox

PREAMBLE = "from typing import List, Dict, Set, Tuple, Optional\n\n"
PRELOAD = ("typing", "json", "math", "re", "itertools", "collections")
"""Imported once per sandbox worker: every puzzle's preamble imports typing."""

# The sandboxed programs compile the puzzle's code themselves, after lifting Python's
# limit on integer literal digits (P3 has puzzles with numbers of thousands of digits).
# Answers travel as JSON text, so the host never converts a huge number.
_HARNESS = (
    type_check_source()
    + """

def __load(source):
    import sys
    sys.set_int_max_str_digits(0)
    namespace = {"__name__": "__puzzle__"}
    exec(compile(PREAMBLE + source, "<puzzle>", "exec"), namespace)
    return namespace


def __answer__(solution):
    import json
    return json.dumps(__load(solution)["sol"]())


def __check__(sat_source, answer_json, ans_type):
    import json
    sat = __load(sat_source)["sat"]
    answer = json.loads(answer_json)
    if not matches(answer, ans_type):
        return f"the answer {answer_json:.80} is not of type {ans_type}"
    result = sat(answer)
    if result is not True:
        return f"sat(answer) returned {result!r:.80}, not True"
    return None


def __accepts__(sat_source, answers_json):
    import json
    sat = __load(sat_source)["sat"]
    out = []
    for answer in json.loads(answers_json):
        try:
            out.append(sat(answer) is True)
        except BaseException:
            out.append(False)
    return out
"""
)
HARNESS = f"PREAMBLE = {PREAMBLE!r}\n" + _HARNESS
"""The program run in the sandbox; its entries take the puzzle's sources as arguments."""


@dataclass(frozen=True)
class Verdict:
    """Whether a solution solves a puzzle; `reason` says why not, `answer` is what it gave."""

    solved: bool
    reason: str | None = None
    answer: Any = None


class PuzzleVerifier:
    """Checks solutions (``sat(sol()) is True`` with the declared answer type) and
    vacuity (``sat`` true for trivial answers, or for every random answer tried).

    Args:
        solution_limits: per run of a solution.
        check_limits: per run of ``sat``.
        isolation: sandbox isolation (see `Sandbox`).
        workers: runs at once per pool.
        random_tries: random answers tried in the vacuity check.
    """

    def __init__(
        self,
        *,
        solution_limits: Limits | None = None,
        check_limits: Limits | None = None,
        isolation: str = "auto",
        workers: int = 2,
        random_tries: int = 8,
    ) -> None:
        small = Limits(wall_seconds=4.0, cpu_seconds=4.0, memory_mb=1024)
        self.solutions = Sandbox(
            limits=solution_limits or small,
            isolation=isolation,  # type: ignore[arg-type]
            workers=workers,
            preload=PRELOAD,
        )
        try:
            self.checks = Sandbox(
                limits=check_limits or small,
                isolation=isolation,  # type: ignore[arg-type]
                workers=workers,
                preload=PRELOAD,
            )
        except BaseException:
            self.solutions.close()
            raise
        self.random_tries = random_tries

    async def answer(self, solution: str) -> tuple[str | None, str | None]:
        """Run ``sol()``: (the answer as JSON text, None) or (None, why it failed)."""
        result = await self.solutions.run(HARNESS, "__answer__", [solution])
        if result.error is not None:
            return None, f"sol() failed: {result.error.kind}: {result.error.message}"
        return result.value, None

    async def check(self, sat: str, ans_type: str, answer_json: str) -> Verdict:
        """Does the answer (JSON text) solve the puzzle?"""
        result = await self.checks.run(HARNESS, "__check__", [sat, answer_json, ans_type])
        if result.error is not None:
            reason = f"sat(answer) failed: {result.error.kind}: {result.error.message}"
            return Verdict(False, reason, answer_json)
        return Verdict(result.value is None, result.value, answer_json)

    async def verify(self, sat: str, ans_type: str, solution: str) -> Verdict:
        """Run the solution, then check its answer."""
        answer, error = await self.answer(solution)
        if answer is None:
            return Verdict(False, error)
        return await self.check(sat, ans_type, answer)

    async def verify_many(self, items: Sequence[tuple[str, str, str]]) -> list[Verdict]:
        """`verify` for many ``(sat, ans_type, solution)`` at once."""
        return list(await asyncio.gather(*(self.verify(*item) for item in items)))

    async def vacuity(self, sat: str, ans_type: str, *, seed: int = 0) -> str | None:
        """Why the puzzle is vacuous, or None: it accepts a trivial answer (``""``, 0,
        ``[]``, False, ...) or every one of `random_tries` random answers of its type."""
        trivial = trivial_answers(ans_type)
        randoms = random_answers(ans_type, self.random_tries, seed=seed)
        answers = json.dumps(trivial + randoms)
        result = await self.checks.run(HARNESS, "__accepts__", [sat, answers])
        if result.error is not None:
            return f"sat could not be checked: {result.error.kind}: {result.error.message}"
        accepted = list(result.value)
        for value, ok in zip(trivial, accepted[: len(trivial)], strict=True):
            if ok:
                return f"vacuous: sat accepts the trivial answer {value!r}"
        if randoms and all(accepted[len(trivial) :]):
            return f"vacuous: sat accepts all {len(randoms)} random answers tried"
        return None

    def close(self) -> None:
        self.solutions.close()
        self.checks.close()

    def __enter__(self) -> PuzzleVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
