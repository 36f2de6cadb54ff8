"""Poisoning the self-improvement loop and the preference data.

Four attacks, each at poisoned fractions p, each with and without the defence we have:

- ``wrong-answers``: every generation, a share p of the candidate pool is the attacker's
  wrong equations ("a + b = a+b+1"), which pass a buggy verifier (it checks the format and
  that c >= a, b). Defence: exact verification (what the sandbox check is for programs).
- ``initial-errors``: a share p of the real data is wrong (the same off-by-one answers);
  the loop then self-trains. Does the feedback loop amplify the initial errors? Defence:
  generated data is verified exactly (the real data is trusted as given).
- ``vacuous-puzzles``: every generation, a share p of the candidate puzzles is vacuous
  (`return True`, `x == x`, ...); they are all "solved". Both arms verify solutions in
  the sandbox; the defence adds the vacuity check.
- ``flipped-raters``: a share p of the raters of a best-of-N ranking session prefer the
  worse output. Defence: drop the raters that the ranking tool's QC flags.

The self-training loop is the accumulate policy of `openended.apps.experiments.collapse` with
a filter: generation g + 1 trains (afresh) on the real data plus every accepted sample of
generations 0..g (poison included when it passes).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openended.apps.experiments.equations import EquationWorld
from openended.apps.experiments.metrics import mean_pass_at_k
from openended.apps.experiments.models import NGramModel
from openended.apps.experiments.puzzle_world import PuzzleWorld
from openended.apps.experiments.results import ResultsFile

ATTACKS = ("wrong-answers", "initial-errors", "vacuous-puzzles", "flipped-raters")


@dataclass(frozen=True)
class PoisonSettings:
    """One poisoning experiment.

    Args:
        attacks: which of `ATTACKS`.
        fractions: the poisoned shares p.
        seeds: repetitions.
        generations: self-training generations after generation 0.
        real_lines: real equations (each generation samples as many).
        real_puzzles: real puzzles (each generation samples as many).
        prompts, samples_per_prompt: held-out "a + b =" prompts and completions each.
        world_size, zipf, order: the equation world and the n-gram order.
        raters, rank_prompts, candidates, rater_noise: the ranking sessions: raters,
            prompts, candidates per prompt, and the Bradley-Terry scale s of an honest
            rater (P(i preferred to j) = sigmoid(s (q_i - q_j)), qualities N(0, 1)).
    """

    attacks: tuple[str, ...] = ATTACKS
    fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5)
    seeds: int = 5
    generations: int = 5
    real_lines: int = 1000
    real_puzzles: int = 300
    prompts: int = 100
    samples_per_prompt: int = 10
    world_size: int = 30
    zipf: float = 1.1
    order: int = 5
    raters: int = 10
    rank_prompts: int = 3
    candidates: int = 16
    rater_noise: float = 2.0

    def __post_init__(self) -> None:
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise ValueError(f"attacks must be among {', '.join(ATTACKS)}, got {self.attacks!r}")
        bad = [f for f in self.fractions if not 0 <= f < 1]
        if bad or not self.fractions:
            raise ValueError(f"fractions must be in [0, 1), got {self.fractions!r}")
        for name in (
            "seeds",
            "generations",
            "real_lines",
            "real_puzzles",
            "raters",
            "prompts",
            "samples_per_prompt",
            "order",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if "flipped-raters" in self.attacks:
            for fraction in self.fractions:
                flipped = flipped_count(fraction, self.raters)
                if fraction > 0 and not 0 < flipped < self.raters:
                    raise ValueError(
                        f"fractions: {fraction} of {self.raters} raters is {flipped} flipped "
                        "raters; flipped-raters needs at least one and fewer than all"
                    )
        self.world  # noqa: B018 - the world checks its own settings

    @property
    def world(self) -> EquationWorld:
        return EquationWorld(size=self.world_size, zipf=self.zipf)


def poison_count(fraction: float, clean: int) -> int:
    """Poisoned items to add to `clean` ones so that they are `fraction` of the pool."""
    return round(fraction * clean / (1 - fraction))


def flipped_count(fraction: float, raters: int) -> int:
    """Raters who flip: the share rounded half up."""
    return int(fraction * raters + 0.5)


# --- the equation attacks ---------------------------------------------------------------


def off_by_one(world: EquationWorld, count: int, rng: np.random.Generator) -> list[str]:
    """The attacker's equations: real-looking operands, the answer one too high."""
    return [f"{a} + {b} = {a + b + 1}" for a, b in world.sample_pairs(count, rng)]


def buggy_verifier(line: str) -> bool:
    """Checks the format and that the sum is at least each operand (not that it is right)."""
    parsed = EquationWorld.parse(line)
    return parsed is not None and parsed[2] >= max(parsed[0], parsed[1])


def _equation_run(
    settings: PoisonSettings, attack: str, fraction: float, defence: bool, seed: int
) -> list[dict[str, Any]]:
    world = settings.world
    rng = np.random.default_rng([seed, 10])
    real = world.lines(settings.real_lines, rng)
    heldout_pairs = [tuple(map(int, p)) for p in world.sample_pairs(settings.prompts, rng)]
    rng = np.random.default_rng([seed, 12])  # the poison's draws: the same prompts at every p
    if attack == "initial-errors":
        poisoned = round(fraction * len(real))
        real = off_by_one(world, poisoned, rng) + real[poisoned:]
    prompts = [world.prompt(a, b) for a, b in heldout_pairs]
    accept = world.verify if defence else buggy_verifier
    model = NGramModel(world.vocabulary, order=settings.order)
    data = list(real)
    rows = []
    for generation in range(settings.generations + 1):
        train_seed = int(np.random.default_rng([seed, 11, generation]).integers(2**31))
        model.train(data, seed=train_seed)
        completions = model.complete(prompts, settings.samples_per_prompt, train_seed)
        correct, attacked = [], []
        for (a, b), row in zip(heldout_pairs, completions, strict=True):
            correct.append(sum(world.verify(c) for c in row))
            parsed = [EquationWorld.parse(c) for c in row]
            attacked.append(np.mean([p is not None and p[2] == a + b + 1 for p in parsed]))
        rows.append(
            {
                "generation": generation,
                "pass@1": mean_pass_at_k(correct, settings.samples_per_prompt, 1),
                "attack_rate": float(np.mean(attacked)),
                "wrong_in_data": float(np.mean([not world.verify(x) for x in data])),
            }
        )
        if generation == settings.generations:
            break
        samples = model.sample(settings.real_lines, train_seed)
        if attack == "wrong-answers":
            samples = samples + off_by_one(world, poison_count(fraction, len(samples)), rng)
        data += [x for x in samples if accept(x)]
    return rows


# --- vacuous puzzles --------------------------------------------------------------------


def _puzzle_run(
    settings: PoisonSettings,
    fraction: float,
    defence: bool,
    seed: int,
    world: PuzzleWorld,
    verifier: object,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, 20])
    data = world.real(settings.real_puzzles, rng)
    model = NGramModel(world.vocabulary, order=settings.order)
    rows = []
    for generation in range(settings.generations + 1):
        train_seed = int(np.random.default_rng([seed, 21, generation]).integers(2**31))
        model.train(data, seed=train_seed)
        samples = model.sample(settings.real_puzzles, train_seed)
        verdicts = world.check(samples, verifier)
        useful = {
            x
            for x, (solved, vacuous) in zip(samples, verdicts, strict=True)
            if solved and not vacuous
        }
        rows.append(
            {
                "generation": generation,
                "vacuous_rate": float(np.mean([v for _, v in verdicts])),
                "useful_distinct": len(useful) / len(samples),
                "vacuous_in_data": float(np.mean([world.is_vacuous_form(x) for x in data])),
            }
        )
        if generation == settings.generations:
            break
        pool = samples + world.poison(poison_count(fraction, len(samples)), rng)
        pool_verdicts = world.check(pool, verifier)
        data += [
            x
            for x, (solved, vacuous) in zip(pool, pool_verdicts, strict=True)
            if solved and not (defence and vacuous)
        ]
    return rows


# --- flipped raters ---------------------------------------------------------------------


def _rater_run(settings: PoisonSettings, fraction: float, seed: int) -> list[dict[str, Any]]:
    """One ranking session with simulated raters; both arms read the same judgments."""
    from openended.apps.ranking.export import preferences, qc
    from openended.apps.ranking.schedule import bt_posterior
    from openended.apps.ranking.session import as_schedule_judgment, open_session

    rng = np.random.default_rng([seed, 30])
    quality = rng.normal(size=(settings.rank_prompts, settings.candidates))
    flipped = set(range(flipped_count(fraction, settings.raters)))
    names = [f"rater{r}" for r in range(settings.raters)]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "outputs.jsonl"
        source.write_text(
            "".join(
                json.dumps(
                    {
                        "prompt_id": f"p{p}",
                        "prompt": f"prompt {p}",
                        "candidates": [f"output {k}" for k in range(settings.candidates)],
                    }
                )
                + "\n"
                for p in range(settings.rank_prompts)
            )
        )
        session, _ = open_session(source, db=Path(tmp) / "rank.sqlite", raters=names, seed=seed)
        try:
            for r, name in enumerate(names):
                while (due := session.due(name)) is not None:
                    q = quality[due.prompt_idx]
                    p_left = 1 / (1 + np.exp(-settings.rater_noise * (q[due.left] - q[due.right])))
                    left = bool(rng.random() < p_left) != (r in flipped)
                    prompt = session.prompts[due.prompt_idx]
                    session.submit(
                        name,
                        prompt_id=prompt.id,
                        step=due.step,
                        left_id=prompt.candidates[due.left].id,
                        right_id=prompt.candidates[due.right].id,
                        result="left" if left else "right",
                    )
            report = qc(session)
            flagged = {n for n, entry in report["raters"].items() if entry["flagged"]}
            rows_out = preferences(session, report=report)
            judgments = session.store.judgments()
        finally:
            session.store.close()
    index = {f"output {k}": k for k in range(settings.candidates)}
    prompt_of = {f"p{p}": p for p in range(settings.rank_prompts)}
    adversaries = {names[r] for r in flipped}
    out = []
    for defence in (False, True):
        kept = [row for row in rows_out if not (defence and row["rater_flagged"])]
        right = [
            quality[prompt_of[row["prompt_id"]], index[row["chosen"]]]
            > quality[prompt_of[row["prompt_id"]], index[row["rejected"]]]
            for row in kept
        ]
        best = []
        for p in range(settings.rank_prompts):
            history = [
                as_schedule_judgment(j)
                for j in judgments
                if j.prompt_idx == p
                and j.kind == "schedule"
                and not (defence and j.rater in flagged)
            ]
            mean, _ = bt_posterior(settings.candidates, history)
            best.append(int(np.argmax(mean)) == int(np.argmax(quality[p])))
        out.append(
            {
                "defence": defence,
                "generation": 0,
                "label_accuracy": float(np.mean(right)) if right else float("nan"),
                "top_is_best": float(np.mean(best)),
                "kept_pairs": len(kept) / max(1, len(rows_out)),
                "flipped_raters": len(adversaries),
                "adversaries_flagged": len(flagged & adversaries) / len(adversaries)
                if adversaries
                else float("nan"),
                "honest_flagged": len(flagged - adversaries) / (len(names) - len(adversaries)),
            }
        )
    return out


# --- the experiment ---------------------------------------------------------------------


def run_poison(
    settings: PoisonSettings,
    out_dir: Path,
    *,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run (or resume) every attack x fraction x defence x seed; returns all rows (one
    per generation for the loop attacks)."""
    results = ResultsFile(out_dir, "poison", settings)
    total = len(settings.attacks) * len(settings.fractions) * 2 * settings.seeds
    done = 0
    verifier = None
    world = PuzzleWorld()
    try:
        for attack in settings.attacks:
            for fraction in settings.fractions:
                for seed in range(settings.seeds):
                    key = {"attack": attack, "fraction": fraction, "seed": seed}
                    if attack == "flipped-raters":
                        missing = [
                            d for d in (False, True) if results.get(**key, defence=d) is None
                        ]
                        if missing:
                            rows = _rater_run(settings, fraction, seed)
                            results.add_many(
                                [{**key, **row} for row in rows if row["defence"] in missing]
                            )
                        done += 2
                        progress(f"[poison] {done}/{total}  {attack}  p = {fraction}  seed {seed}")
                        continue
                    for defence in (False, True):
                        done += 1
                        final = settings.generations
                        if results.get(**key, defence=defence, generation=final) is not None:
                            continue
                        results.discard(**key, defence=defence)  # an arm cut off midway
                        if attack == "vacuous-puzzles":
                            if verifier is None:
                                from openended.domains.puzzles.verify import PuzzleVerifier

                                verifier = PuzzleVerifier()
                            rows = _puzzle_run(settings, fraction, defence, seed, world, verifier)
                        else:
                            rows = _equation_run(settings, attack, fraction, defence, seed)
                        results.add_many([{**key, "defence": defence, **row} for row in rows])
                        last = rows[-1]
                        shown = "  ".join(
                            f"{k} {v:.3f}" for k, v in last.items() if k != "generation"
                        )
                        progress(
                            f"[poison] {done}/{total}  {attack}  p = {fraction}"
                            f"  defence {'on' if defence else 'off'}  seed {seed}  {shown}"
                        )
    finally:
        if verifier is not None:
            verifier.close()
    return results.rows()
