"""Training pairs from a finished run of any domain: the operator's real prompt and the
model's completion, for the children that the verifier kept.

This is the data of ELM's fine-tuned diff model (Lehman et al. 2022, arXiv 2206.08896:
the search's own successful diffs) and of expert iteration / STaR: only candidates that
were evaluated and valid, and by default only those that beat their best parent. Two
guards against the self-training failures that `openended.apps.experiments` measures
(collapse, poisoning): pairs come only from verified candidates, and one parent may
contribute at most `max_per_parent` pairs (the largest gains first), so that one lucky
lineage cannot dominate the data.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from openended.apps.training.finetune import Example, FinetuneError, Preference
from openended.domains.program.domain import normalised_ast
from openended.operators.menu import option_lines
from openended.store.run_store import (
    CandidateRecord,
    RunStore,
    beats_its_parent,
    best_parent,
    valid_fitness,
)

Selection = Literal["improved", "archive", "valid"]
"""Which valid children make pairs: those that beat their best parent; those that entered
the archive when they were evaluated; every valid child."""

SELECTIONS: tuple[str, ...] = ("improved", "archive", "valid")


class TooFewPairsError(FinetuneError):
    """The run holds fewer training pairs than the minimum asked for."""


@dataclass
class PairSelection:
    """The pairs chosen from a run, and how many candidates each rule removed."""

    examples: list[Example]
    ids: list[int]
    """The candidate each pair came from, in the order of `examples`."""
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return _summary(len(self.examples), "pairs", self.counts)


def select_pairs(
    run_dir: str | Path,
    *,
    select: Selection = "improved",
    max_per_parent: int = 4,
    min_pairs: int = 1,
) -> PairSelection:
    """The prompt -> completion pairs of the run in `run_dir` (see the module docstring),
    deduplicated by normalised genome. Raises `TooFewPairsError` when fewer than
    `min_pairs` remain."""
    if select not in SELECTIONS:
        raise FinetuneError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    if max_per_parent < 1:
        raise FinetuneError(f"max_per_parent must be at least 1, got {max_per_parent}")
    run_dir = Path(run_dir)
    records = _run_records(run_dir)
    fitness = valid_fitness(records)
    counts: Counter[str] = Counter(candidates=len(records))
    chosen: list[tuple[float, int, CandidateRecord]] = []  # (gain, best parent, child)
    for record in records:
        if record.status != "valid" or record.fitness is None or not record.parents:
            continue  # seeds have no prompt; unverified children teach nothing
        if not record.prompt or not record.completion:
            continue
        counts["valid children"] += 1
        best = best_parent(record, fitness)
        gain = record.fitness - best[1] if best is not None else 0.0
        if select == "improved" and (best is None or gain <= 0):
            continue
        if select == "archive" and not record.added:
            continue
        chosen.append((gain, best[0] if best is not None else record.parents[0], record))
    counts[f"selected ({select})"] = len(chosen)
    chosen.sort(key=lambda item: (-item[0], item[2].id or 0))  # largest gains first
    seen: set[str] = set()
    per_parent: Counter[int] = Counter()
    kept: list[CandidateRecord] = []
    for _, parent, record in chosen:
        key = normalised_genome(record.genome or "")
        if key in seen:
            counts["duplicates"] += 1
            continue
        if per_parent[parent] >= max_per_parent:
            counts["over the per-parent cap"] += 1
            continue
        seen.add(key)
        per_parent[parent] += 1
        kept.append(record)
    kept.sort(key=lambda r: r.id or 0)
    selection = PairSelection(
        examples=[Example(r.prompt or "", r.completion or "") for r in kept],
        ids=[r.id or 0 for r in kept],
        counts=dict(counts),
    )
    if len(kept) < min_pairs:
        hint = "" if select == "valid" else "; try --select archive or valid, or a longer run"
        raise TooFewPairsError(
            f"{run_dir}: {selection.summary()}: fewer than the minimum of {min_pairs}{hint}"
        )
    return selection


REJECTED_STATUSES = ("invalid", "parse_error", "search_not_found", "duplicate")
"""Children that a preference pair may reject: evaluated and rejected, unparsable, a diff
that does not apply, or a near-copy of a program already in the run (teaching the model
away from copying: the collapse a supervised fine-tune on few successes falls into)."""


@dataclass
class PreferenceSelection:
    """Preference pairs chosen from a run, and counts of what went into them."""

    preferences: list[Preference]
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return _summary(len(self.preferences), "preference pairs", self.counts)


def select_preferences(
    run_dir: str | Path, *, max_per_prompt: int = 4, min_pairs: int = 1
) -> PreferenceSelection:
    """Preference pairs for DPO from the run in `run_dir`: for each prompt the model was
    given (the operator's real prompt), a valid new child is chosen over a child of the
    same prompt that failed (`REJECTED_STATUSES`). Valid children are deduplicated by
    normalised genome across the run; each prompt gives at most `max_per_prompt` pairs,
    cycling through its chosen and rejected children. Raises `TooFewPairsError` when
    fewer than `min_pairs` remain."""
    if max_per_prompt < 1:
        raise FinetuneError(f"max_per_prompt must be at least 1, got {max_per_prompt}")
    run_dir = Path(run_dir)
    records = _run_records(run_dir)
    counts: Counter[str] = Counter(candidates=len(records))
    by_prompt: dict[str, tuple[list[str], list[str]]] = {}
    seen: set[str] = set()
    for record in records:
        if not record.parents or not record.prompt or not record.completion:
            continue
        chosen, rejected = by_prompt.setdefault(record.prompt, ([], []))
        if record.status == "valid":
            key = normalised_genome(record.genome or "")
            if key in seen:
                continue
            seen.add(key)
            counts["valid children"] += 1
            chosen.append(record.completion)
        elif record.status in REJECTED_STATUSES:
            counts[f"rejected ({record.status})"] += 1
            rejected.append(record.completion)
    preferences = []
    for prompt, (chosen, rejected) in by_prompt.items():
        if not chosen or not rejected:
            continue
        counts["prompts with both"] += 1
        for k in range(min(max_per_prompt, max(len(chosen), len(rejected)))):
            preferences.append(
                Preference(prompt, chosen[k % len(chosen)], rejected[k % len(rejected)])
            )
    selection = PreferenceSelection(preferences, dict(counts))
    if len(preferences) < min_pairs:
        raise TooFewPairsError(
            f"{run_dir}: {selection.summary()}: fewer than the minimum of {min_pairs}"
        )
    return selection


def select_improvement_preferences(
    run_dir: str | Path, *, max_per_prompt: int = 4, min_pairs: int = 1
) -> PreferenceSelection:
    """EvoTune-style preference pairs (Surina et al. 2025, arXiv 2504.05108: DPO on a
    program that scores higher over one that scores lower, for the same prompt): each
    child that beat its best parent is chosen over (1) the children of the same prompt
    that did not (valid but no better, or failed), then (2) where the prompt is a
    lettered menu, the menu's other options (the same reply with another letter: of
    options drawn at random, most do not improve). At most `max_per_prompt` pairs per
    improving child. Raises `TooFewPairsError` when fewer than `min_pairs` remain."""
    if max_per_prompt < 1:
        raise FinetuneError(f"max_per_prompt must be at least 1, got {max_per_prompt}")
    run_dir = Path(run_dir)
    records = _run_records(run_dir)
    fitness = valid_fitness(records)
    counts: Counter[str] = Counter(candidates=len(records))
    improving: dict[str, list[str]] = {}
    others: dict[str, list[str]] = {}
    for record in records:
        if not record.parents or not record.prompt or not record.completion:
            continue
        if beats_its_parent(record, fitness):
            counts["improving children"] += 1
            improving.setdefault(record.prompt, []).append(record.completion)
        elif record.status == "valid" or record.status in REJECTED_STATUSES:
            others.setdefault(record.prompt, []).append(record.completion)
    preferences = []
    for prompt, chosen in improving.items():
        for completion in chosen:
            rejected = [c for c in others.get(prompt, []) if c.strip() != completion.strip()]
            counts["against siblings"] += len(rejected[:max_per_prompt])
            letter = re.search(r"[A-Z]", completion)
            if letter is not None:
                alternatives = [
                    completion.replace(letter.group(0), label, 1)
                    for label, _ in option_lines(prompt)
                    if label != letter.group(0)
                ]
                counts["against other options"] += len(
                    alternatives[: max(0, max_per_prompt - len(rejected))]
                )
                rejected += alternatives
            preferences += [Preference(prompt, completion, r) for r in rejected[:max_per_prompt]]
    selection = PreferenceSelection(preferences, dict(counts))
    if len(preferences) < min_pairs:
        raise TooFewPairsError(
            f"{run_dir}: {selection.summary()}: fewer than the minimum of {min_pairs}"
        )
    return selection


def _run_records(run_dir: Path) -> list[CandidateRecord]:
    if not (run_dir / "run.sqlite").exists():
        raise FinetuneError(f"{run_dir}: not a run directory (no run.sqlite)")
    with RunStore(run_dir) as store:
        return list(store.candidates())


def _summary(count: int, noun: str, counts: dict[str, int]) -> str:
    parts = ", ".join(f"{key} {value}" for key, value in counts.items())
    return f"{count} {noun} ({parts})"


def normalised_genome(genome: str) -> str:
    """A genome's identity for deduplication: Python (programs, formulas, puzzles) by its
    normalised syntax tree; other text by its words, case-folded."""
    return normalised_ast(genome) or " ".join(genome.casefold().split())


def write_pairs(path: str | Path, examples: Sequence[Example], sources: Sequence[object]) -> None:
    """Pairs as JSONL (``prompt``, ``completion``, ``source``: the candidate id, or the
    run and id), which ``openended finetune --data`` reads back."""
    lines = [
        json.dumps({"prompt": e.prompt, "completion": e.completion, "source": source})
        for e, source in zip(examples, sources, strict=True)
    ]
    Path(path).write_text("".join(line + "\n" for line in lines))


def write_preferences(path: str | Path, preferences: Sequence[Preference]) -> None:
    """Preference pairs as JSONL in TRL's format (``prompt``, ``chosen``, ``rejected``)."""
    rows = [json.dumps(asdict(p)) for p in preferences]
    Path(path).write_text("".join(row + "\n" for row in rows))
