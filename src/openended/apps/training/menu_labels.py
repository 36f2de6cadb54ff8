"""Dense labels for a menu's every option: the model learns *which term* helps, not which
letter it happened to pick.

Training on the search's own improving children (ELM's pairs, EvoTune's preferences;
`openended.apps.training.pairs`) teaches the embedded model little on the ``menu``
operator: issue 36 measured 0.72x (SFT) and 0.91x (DPO) of the control's rate of improving
children, with intervals covering 1. A search of 48 children gives 10 to 20 improving
ones, and the base model picks letters by position (195 of 288 replies were C or D), so
each improving reply says little about the option's content.

Here every option of every menu the search showed its model is turned into a child and
evaluated (refine stage included), at evaluator calls and no LM calls: each menu is then
labelled with every option's fitness, and the prompt can be shown with its options in
several orders, each with the best option's letter as the answer. That is expert iteration
with a dense, exact teacher (the evaluator), as in "learning to search" from an oracle's
choices (Daumé, Langford and Marcu 2009); the permutations make a letter's position carry
no information. The labels cost evaluator calls, which `MenuLabels.evaluations` counts
(the control arm spends none).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from openended.apps.training.finetune import Example
from openended.domains.program.weighted_sum import returned_value
from openended.operators.menu import (
    LABELS,
    OPTION_LINE,
    chosen_label,
    named_option,
    option_lines,
)
from openended.operators.term import add_term
from openended.run_dir import RunDir
from openended.store.run_store import CandidateRecord, RunStore, best_parent, valid_fitness

MENU_OPERATORS = ("menu", "menu_text")
"""The operators whose prompts are menus (`openended.operators.menu`)."""
CHUNK = 16
"""Children evaluated between progress lines and saves of the labels."""


@dataclass
class MenuLabel:
    """One menu the search showed its model, every option evaluated."""

    prompt: str
    parent_fitness: float
    options: list[str]
    """The option terms in the prompt's order (A, B, ...)."""
    fitness: list[float | None]
    """Each option's child, its parameters fitted (None: invalid)."""
    picked: int | None
    """The option the model picked in the search (None: its reply named none)."""
    operator: str = "menu"
    """The operator that showed it: ``menu`` is answered by letter, ``menu_text`` by the
    option's text."""

    def improving(self) -> list[int]:
        """The options whose child beats the parent, best first."""
        better = [
            i for i, f in enumerate(self.fitness) if f is not None and f > self.parent_fitness
        ]
        return sorted(better, key=lambda i: -self.fitness[i])  # type: ignore[operator]


@dataclass
class MenuLabels:
    """A run's menus with their labels, and what the labelling spent."""

    menus: list[MenuLabel]
    evaluations: int
    """Evaluator calls the labelling spent (refine stage included)."""
    agreement: tuple[int, int]
    """Of the options the model picked: how many were labelled as the search found them
    (beat the parent or not), of how many (the labels reproduce the search's outcomes)."""

    def summary(self) -> str:
        menus = len(self.menus)
        options = sum(len(m.options) for m in self.menus)
        improving = sum(len(m.improving()) for m in self.menus)
        with_one = sum(bool(m.improving()) for m in self.menus)
        agree, of = self.agreement
        return (
            f"{menus} menus, {options} options: {improving} improve their parent; "
            f"{with_one} menus have one; {self.evaluations} evaluator calls; the model's "
            f"picks labelled as the search found them: {agree} of {of}"
        )


def menu_options(prompt: str) -> list[str]:
    """The option terms of a menu prompt, in order (empty: not a menu prompt)."""
    return [term for _, term in option_lines(prompt)]


def reordered(prompt: str, order: Sequence[int]) -> str:
    """The menu prompt with its options shown in `order` (indices into its options),
    relettered A, B, ..."""
    options = menu_options(prompt)
    lines = iter(range(len(options)))

    def swap(match: re.Match[str]) -> str:
        position = next(lines)
        return f"{match.group(1)}{LABELS[position]}. {options[order[position]]}"

    return OPTION_LINE.sub(swap, prompt)


def label_menus(
    run_dir: str | Path,
    *,
    cache: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> MenuLabels:
    """Every option of every ``menu`` child's prompt in the run at `run_dir`, added to its
    parent and evaluated with the run's own domain and evaluator (so the refine stage fits
    its weight as in the search). Distinct children are evaluated once. With `cache`, the
    labels are saved there every `CHUNK` children and read back on a rerun."""
    from openended.api import build_domain

    run_dir = Path(run_dir)
    with RunStore(run_dir) as store:
        records = list(store.candidates())
    fitness = valid_fitness(records)
    by_id = {r.id: r for r in records}
    menus: list[tuple[CandidateRecord, tuple[int, float], list[str]]] = []
    for record in records:
        options = menu_options(record.prompt or "") if record.operator in MENU_OPERATORS else []
        parent = best_parent(record, fitness) if options else None
        if parent is not None:
            menus.append((record, parent, options))
    saved = _read_cache(cache)
    genomes: dict[str, float | None] = dict(saved.get("fitness", {}))
    evaluations = int(saved.get("evaluations", 0))
    wanted: dict[tuple[int, str], str | None] = {}
    for record, (parent_id, _), options in menus:
        parent_genome = by_id[parent_id].genome or ""
        returned = returned_value(parent_genome)
        for term in options:
            genome = add_term(parent_genome, returned, term) if returned else None
            wanted[(record.id or 0, term)] = genome
    todo = sorted({g for g in wanted.values() if g is not None and g not in genomes})
    if todo:
        domain = build_domain(RunDir(run_dir).config())
        try:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start : start + CHUNK]
                found = asyncio.run(domain.evaluate(chunk))
                for genome, evaluation in zip(chunk, found, strict=True):
                    valid = evaluation.valid and evaluation.fitness is not None
                    genomes[genome] = float(evaluation.fitness) if valid else None  # type: ignore[arg-type]
                    evaluations += max(int(evaluation.evaluations or 1), 1)
                _write_cache(cache, genomes, evaluations)
                log(f"labelled {min(start + CHUNK, len(todo))} of {len(todo)} options")
        finally:
            domain.close()
    labels, agree, of = [], 0, 0
    for record, (_, parent_fitness), options in menus:
        values = [
            genomes.get(g) if (g := wanted[(record.id or 0, term)]) is not None else None
            for term in options
        ]
        reply = record.completion or ""
        picked = (
            named_option(reply, options)
            if record.operator == "menu_text"
            else chosen_label(reply, len(options))
        )
        label = MenuLabel(
            record.prompt or "", parent_fitness, options, values, picked, record.operator
        )
        if picked is not None and record.status in ("valid", "invalid"):
            of += 1
            searched = record.status == "valid" and (record.fitness or -np.inf) > parent_fitness
            agree += (picked in label.improving()) == searched
        labels.append(label)
    return MenuLabels(labels, evaluations, (agree, of))


def menu_examples(labels: MenuLabels, *, orders: int = 4, seed: int = 0) -> list[Example]:
    """Prompt -> reply pairs from labelled menus: each menu with an improving option,
    shown in `orders` orders (its own first, then random permutations), answered with the
    best option in the search's reply format: its letter (`` C.``) for ``menu``, its text
    for ``menu_text``."""
    rng = np.random.default_rng(seed)
    examples = []
    for menu in labels.menus:
        improving = menu.improving()
        if not improving:
            continue
        count = len(menu.options)
        for k in range(orders):
            order = list(range(count)) if k == 0 else [int(i) for i in rng.permutation(count)]
            if menu.operator == "menu_text":
                reply = f" {menu.options[improving[0]]}"
            else:
                reply = f" {LABELS[order.index(improving[0])]}."
            examples.append(Example(reordered(menu.prompt, order), reply))
    return examples


def _read_cache(cache: str | Path | None) -> dict:
    if cache is None or not Path(cache).is_file():
        return {}
    return json.loads(Path(cache).read_text())


def _write_cache(
    cache: str | Path | None, genomes: dict[str, float | None], evaluations: int
) -> None:
    if cache is None:
        return
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(cache).with_suffix(".tmp")
    temporary.write_text(json.dumps({"evaluations": evaluations, "fitness": genomes}))
    temporary.replace(cache)


def labels_json(labels: MenuLabels) -> dict:
    """The labels as JSON (what the loop keeps beside the model it trained)."""
    return {
        "evaluations": labels.evaluations,
        "agreement": list(labels.agreement),
        "menus": [asdict(m) for m in labels.menus],
    }
