"""Training pairs from verified puzzles: the solve prompt, and the verified solution body
as the completion, so that fine-tuning teaches exactly what pass@k measures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from openended.apps.training.finetune import Example, FinetuneError
from openended.domains.puzzles.p3 import Puzzle
from openended.domains.puzzles.puzzle_source import PuzzleParseError, PuzzleSource, parse_puzzle
from openended.domains.puzzles.solve import solve_prompt


def puzzle_example(puzzle: Puzzle, body: str) -> Example:
    """One pair: the prompt ends after the header/docstring, the completion is the body."""
    return Example(prompt=solve_prompt(puzzle), completion="\n" + body.rstrip() + "\n")


def examples_from_sources(sources: Iterable[PuzzleSource]) -> list[Example]:
    """Pairs from verified (sat, sol) sources, one per distinct puzzle."""
    examples = []
    for index, source in enumerate(distinct_sources(list(sources))):
        puzzle = source.as_puzzle(f"generated:{index}")
        examples.append(puzzle_example(puzzle, puzzle.sol_bodies[0]))
    return examples


def sources_from_run(
    run_dir: Path, *, select: Literal["elites", "valid"] = "elites"
) -> list[PuzzleSource]:
    """The verified puzzles of a ``puzzles`` run: its archive's elites (the QD-curated
    set) or every valid candidate."""
    from openended.run_dir import RunDir

    run = RunDir(run_dir)
    with run.store() as store:
        domain = run.config().domain_name
        if domain != "puzzles":
            raise FinetuneError(
                f"{run_dir} is a {domain!r} run; fine-tuning on a run needs a 'puzzles' run "
                "(or give --data FILE.jsonl with prompt/completion pairs)"
            )
        records = [r for r in store.candidates() if r.status == "valid" and r.genome]
        if select == "elites":
            ids = run.elite_ids(store)
            records = [r for r in records if r.id in ids]
    sources = []
    for record in records:
        try:
            sources.append(parse_puzzle(record.genome or ""))
        except PuzzleParseError:
            continue
    return sources


def distinct_sources(sources: Sequence[PuzzleSource]) -> list[PuzzleSource]:
    """One source per distinct puzzle (normalised AST of sat), first kept."""
    seen: set[str] = set()
    out = []
    for source in sources:
        key = source.fingerprint or source.sat
        if key not in seen:
            seen.add(key)
            out.append(source)
    return out
