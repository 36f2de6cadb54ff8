"""Self-play puzzles (Haluptzok, Bowers and Kalai 2022, "Language Models Can Teach
Themselves to Program Better", arXiv 2207.14502): the model writes new puzzles together
with their solutions, few-shot from training puzzles in P3's format; the sandbox keeps a
puzzle only where its solution verifies (``sat(sol())`` is True with the declared answer
type) and ``sat`` is not vacuous (true for a trivial answer or for every random answer
tried: `PuzzleVerifier.vacuity`). Kept puzzles are deduplicated by the normalised AST of
``sat``, and copies of the prompt's own examples are dropped: they teach nothing new.

Haluptzok et al. fine-tuned GPT-Neo-125M on such puzzles and solved 22.2 -> 26.1 of 228
held-out P3 puzzles; `SolveLoop`'s ``selfplay`` arm runs this at the same number of sampled
completions as expert iteration on the training puzzles.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from openended.domains.program.domain import normalised_ast
from openended.domains.puzzles.domain import PUZZLE_STOPS, puzzle_genomes
from openended.domains.puzzles.p3 import Puzzle
from openended.domains.puzzles.puzzle_source import PuzzleParseError, PuzzleSource, parse_puzzle
from openended.domains.puzzles.verify import PuzzleVerifier
from openended.lm.base import GenerationRequest, LanguageModel
from openended.operators import load_template

PROMPT_DIR = Path(__file__).parents[2] / "domains" / "puzzles" / "prompts"
"""The puzzles domain's prompts: self-play uses its few-shot ``lmx`` prompt."""


@dataclass
class SelfPlayResult:
    """The puzzles kept, and what became of every completion."""

    kept: list[PuzzleSource]
    counts: dict[str, int] = field(default_factory=dict)
    """completions, unparsable, solution fails, vacuous, duplicate, copy of an example,
    kept."""
    tokens: int = 0


@dataclass(frozen=True)
class _Example:
    genome: str


def self_play_prompts(
    puzzles: Sequence[Puzzle], count: int, *, seed: int, shots: int = 3
) -> list[str]:
    """`count` few-shot prompts, each showing `shots` of the `puzzles` (with a reference
    solution) drawn by `seed`, ending where the model starts a new ``sat``."""
    template = load_template("lmx", override=None, domain_dir=PROMPT_DIR)
    examples = [_Example(g) for g in puzzle_genomes(puzzles)]
    if not examples:
        raise ValueError("self-play needs puzzles with a reference solution to show")
    rng = random.Random(seed)
    return [
        template.render(parents=rng.sample(examples, min(shots, len(examples))), domain={})
        for _ in range(count)
    ]


async def keep_puzzles(
    completions: Sequence[str],
    verifier: PuzzleVerifier,
    *,
    examples: Sequence[Puzzle] = (),
) -> SelfPlayResult:
    """The completions' puzzles that verify, are not vacuous, are not a copy of one of
    `examples`, and are new (first of each normalised ``sat`` kept)."""
    counts: Counter[str] = Counter(completions=len(completions))
    parsed: list[PuzzleSource] = []
    for text in completions:
        try:
            parsed.append(parse_puzzle(text))
        except (PuzzleParseError, ValueError):
            counts["unparsable"] += 1
    verdicts = await verifier.verify_many([(p.sat, p.ans_type, p.sol) for p in parsed])
    known = {normalised_ast(p.sat) or p.sat for p in examples}
    seen: set[str] = set()
    kept = []
    for source, verdict in zip(parsed, verdicts, strict=True):
        if not verdict.solved:
            counts["solution fails"] += 1
            continue
        key = source.fingerprint or source.sat
        if key in known:
            counts["copy of an example"] += 1
            continue
        if key in seen:
            counts["duplicate"] += 1
            continue
        if await verifier.vacuity(source.sat, source.ans_type, seed=len(seen)) is not None:
            counts["vacuous"] += 1
            continue
        seen.add(key)
        kept.append(source)
    counts["kept"] = len(kept)
    return SelfPlayResult(kept, dict(counts))


async def self_play(
    lm: LanguageModel,
    puzzles: Sequence[Puzzle],
    verifier: PuzzleVerifier,
    *,
    completions: int,
    seed: int,
    max_tokens: int = 192,
    temperature: float = 0.9,
    batch: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> SelfPlayResult:
    """Sample `completions` new puzzles from few-shot prompts of `puzzles` and keep the
    good ones (`keep_puzzles`)."""
    prompts = self_play_prompts(puzzles, completions, seed=seed)
    texts: list[str] = []
    tokens = 0
    rng = random.Random(seed)
    for start in range(0, len(prompts), batch):
        requests = [
            GenerationRequest(
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=PUZZLE_STOPS,
                seed=rng.randrange(2**62),
            )
            for prompt in prompts[start : start + batch]
        ]
        for result in await lm.generate(requests):
            texts.append(result.generations[0].text)
            tokens += result.generations[0].completion_tokens
        if progress is not None:
            progress(len(texts), len(prompts))
    result = await keep_puzzles(texts, verifier, examples=puzzles)
    result.tokens = tokens
    return result
