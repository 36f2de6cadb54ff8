"""Solve mode: sample solutions to puzzles, verify each in the sandbox, report pass@k
with the unbiased estimator of Chen et al. 2021 (arXiv 2107.03374)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openended.domains.puzzles.p3 import Puzzle
from openended.domains.puzzles.verify import PuzzleVerifier, Verdict
from openended.lm.base import GenerationRequest, LanguageModel

FEW_SHOT = (
    (
        "def sat1(s: str):\n    return s + 'world' == 'Hello world'",
        'def sol1():\n    """Find a string that gives \'Hello world\' after adding \'world\'."""',
        "    return 'Hello '",
    ),
    (
        "def sat2(x: int, a=7, b=51):\n    return a * x + b == 100",
        'def sol2(a=7, b=51):\n    """Solve a linear equation a * x + b == 100."""',
        "    return (100 - b) // a",
    ),
    (
        "def sat3(li: List[int]):\n    return len(li) == 5 and all(i % 2 == 1 for i in li)",
        'def sol3():\n    """Find a list of five odd numbers."""',
        "    return [1, 3, 5, 7, 9]",
    ),
)
"""Worked examples shown before the puzzle (our own, not from any P3 split)."""

SOLUTION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert ", "\n#", "\n```")


def solve_prompt(puzzle: Puzzle, *, shots: int = len(FEW_SHOT)) -> str:
    """A completion prompt: worked examples, then the puzzle and the solution's header and
    docstring. The prompt ends right after the header or the docstring's closing quotes,
    with no newline: SmolLM2's tokenizer merges a newline with the next line's
    indentation, so a bare trailing newline would suggest an unindented next line."""
    index = len(FEW_SHOT[:shots]) + 1
    parts = ["from typing import List\n"]
    for sat, sol, body in FEW_SHOT[:shots]:
        parts.append(f"{sat}\n\n{sol}\n{body}\n")
    sat = puzzle.sat.replace("def sat(", f"def sat{index}(", 1)
    header = puzzle.sol_header.replace("def sol(", f"def sol{index}(", 1)
    doc = f"\n{puzzle.sol_docstring}" if puzzle.sol_docstring.strip() else ""
    parts.append(f"{sat}\n\n{header}{doc}")
    return "\n".join(parts)


def solution_body(completion: str) -> str:
    """The function body in a completion: the lines up to the first unindented one."""
    lines = []
    for line in completion.split("\n"):
        if line.strip() and not line[0].isspace():
            break
        lines.append(line)
    return "\n".join(lines).rstrip()


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from `n` samples of which `c` are correct:
    ``1 - C(n - c, k) / C(n, k)``, computed as a stable product (Chen et al. 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per puzzle, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass
class PuzzleResult:
    """The samples for one puzzle and how many solved it."""

    name: str
    samples: int
    correct: int
    solutions: list[str] = field(default_factory=list)
    """The distinct correct solution bodies."""
    failures: dict[str, int] = field(default_factory=dict)
    """Why samples failed, by reason kind, with counts."""
    empty: int = 0
    """Samples whose function body is empty (a broken backend writes nothing)."""


@dataclass
class SolveReport:
    """pass@k over a set of puzzles."""

    model_id: str
    samples: int
    results: list[PuzzleResult]
    sandbox: dict[str, Any] = field(default_factory=dict)
    """How the solutions were run (isolation, seccomp): verification is only as good as it."""
    completion_tokens: int = 0
    """Tokens the model wrote for all the samples."""

    def pass_at(self, k: int) -> float:
        """Mean pass@k over the puzzles."""
        if not self.results:
            return 0.0
        return sum(pass_at_k(r.samples, r.correct, k) for r in self.results) / len(self.results)

    @property
    def solved(self) -> int:
        return sum(r.correct > 0 for r in self.results)

    def summary(self, ks: Sequence[int]) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "puzzles": len(self.results),
            "samples_per_puzzle": self.samples,
            "solved_at_least_once": self.solved,
            "empty_bodies": sum(r.empty for r in self.results),
            "sandbox": self.sandbox.get("isolation", "?"),
            **{f"pass@{k}": round(self.pass_at(k), 4) for k in ks if k <= self.samples},
        }

    def write(self, path: str | Path, ks: Sequence[int]) -> None:
        data = {"summary": self.summary(ks), "results": [asdict(r) for r in self.results]}
        Path(path).write_text(json.dumps(data, indent=1))


def report_figures(
    report: SolveReport, puzzles: Sequence[Puzzle], ks: Sequence[int]
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """pass@k for each k up to the samples drawn: the mean over the puzzles, and each
    puzzle's in the order of `puzzles` (for an interval over puzzles)."""
    usable = [k for k in ks if k <= report.samples]
    by_name = {r.name: r for r in report.results}
    per_puzzle = {
        f"pass@{k}": [
            round(pass_at_k(by_name[p.name].samples, by_name[p.name].correct, k), 4)
            for p in puzzles
        ]
        for k in usable
    }
    return {f"pass@{k}": round(report.pass_at(k), 4) for k in usable}, per_puzzle


def _failure_kind(verdict: Verdict) -> str:
    reason = verdict.reason or ""
    if reason.startswith("sol() failed: "):
        return reason[len("sol() failed: ") :].split(":", 1)[0]
    if "not of type" in reason:
        return "wrong type"
    if reason.startswith("sat(answer) failed"):
        return "sat raised"
    return "wrong answer"


async def solve_puzzles(
    lm: LanguageModel,
    puzzles: Sequence[Puzzle],
    verifier: PuzzleVerifier,
    *,
    samples: int = 10,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_tokens: int = 128,
    seed: int = 0,
    chunk: int = 8,
    shots: int = len(FEW_SHOT),
    max_prompt_chars: int = 6000,
    progress: Callable[[int, int], None] | None = None,
) -> SolveReport:
    """Sample `samples` solutions per puzzle (`chunk` puzzles per model call), verify
    each distinct one in the sandbox, and count the correct ones. Each puzzle's samples
    are seeded from (`seed`, puzzle name), so results do not depend on batching.

    A puzzle whose prompt is longer than `max_prompt_chars` (P3 has puzzles with numbers
    of thousands of digits) is not sent to the model: it counts as unsolved, with the
    failure ``prompt too long``."""
    results: list[PuzzleResult] = []
    tokens = 0
    prompts = {p.name: solve_prompt(p, shots=shots) for p in puzzles}
    fits = [p for p in puzzles if len(prompts[p.name]) <= max_prompt_chars]
    for p in puzzles:
        if len(prompts[p.name]) > max_prompt_chars:
            results.append(PuzzleResult(p.name, samples, 0, failures={"prompt too long": samples}))
    for start in range(0, len(fits), chunk):
        part = fits[start : start + chunk]
        requests = [
            GenerationRequest(
                prompt=prompts[p.name],
                n=samples,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=SOLUTION_STOPS,
                seed=_puzzle_seed(seed, p.name),
            )
            for p in part
        ]
        generated = await lm.generate(requests)
        tokens += sum(g.completion_tokens for r in generated for g in r.generations)
        for puzzle, result in zip(part, generated, strict=True):
            bodies = [solution_body(g.text) for g in result.generations]
            distinct = sorted(set(bodies))
            verdicts = await verifier.verify_many(
                [(puzzle.sat, puzzle.ans_type, puzzle.solution(body)) for body in distinct]
            )
            by_body = dict(zip(distinct, verdicts, strict=True))
            failures: dict[str, int] = {}
            for body in bodies:
                if not by_body[body].solved:
                    kind = _failure_kind(by_body[body])
                    failures[kind] = failures.get(kind, 0) + 1
            results.append(
                PuzzleResult(
                    name=puzzle.name,
                    samples=samples,
                    correct=sum(by_body[b].solved for b in bodies),
                    solutions=[b for b in distinct if by_body[b].solved],
                    failures=failures,
                    empty=sum(not body.strip() for body in bodies),
                )
            )
        if progress is not None:
            progress(len(results), len(puzzles))
    order = {p.name: i for i, p in enumerate(puzzles)}
    results.sort(key=lambda r: order[r.name])
    return SolveReport(
        model_id=lm.model_id,
        samples=samples,
        results=results,
        sandbox=dict(verifier.solutions.info),
        completion_tokens=tokens,
    )


def _puzzle_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:7], "big")
