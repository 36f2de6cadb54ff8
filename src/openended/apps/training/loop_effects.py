"""The effect of a training loop with its uncertainty: each arm's figure over its
reference's, as a ratio of means with a bootstrap 95% interval over items (held-out
puzzles, or the children of the searches), pooled over the loop's seeds.

Held-out puzzles are the same items in both arms (a paired bootstrap; a puzzle's value is
its pass@k averaged over the seeds); children of two searches are not (each arm's children
are resampled on their own, pooled over the seeds). An effect is claimed only where the
interval excludes 1 (`Effect.significant`); Efron & Tibshirani 1993, ch. 13-14.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openended.apps.training.loop_record import write_loop_record
from openended.stats import ratio_of_means


@dataclass(frozen=True)
class Effect:
    """`arm`'s mean `metric` at `iteration` over `reference`'s, with its interval."""

    metric: str
    arm: str
    reference: str
    iteration: int
    ratio: float
    low: float
    high: float
    items: int
    """Puzzles (paired) or children of both arms (independent) the interval is over."""
    seeds: int
    arm_mean: float
    reference_mean: float

    @property
    def significant(self) -> bool:
        """The 95% interval excludes 1: an effect may be claimed."""
        return self.low > 1.0 or self.high < 1.0

    def line(self) -> str:
        verdict = "an effect" if self.significant else "not distinguishable from no effect"
        return (
            f"{self.metric} {self.arm} {self.iteration} / {self.reference}: "
            f"{self.arm_mean:.4g} / {self.reference_mean:.4g} = {self.ratio:.3f}x "
            f"[{self.low:.3f}, {self.high:.3f}] over {self.items} items, {self.seeds} seed(s): "
            f"{verdict}"
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def ratio_effect(
    metric: str,
    arm: str,
    reference: str,
    iteration: int,
    arm_items: Sequence[Sequence[float]],
    reference_items: Sequence[Sequence[float]],
    *,
    paired: bool,
) -> Effect | None:
    """The effect from each seed's items of the two arms (one list per seed). Paired:
    every seed measured the same items in the same order, averaged over the seeds item by
    item; otherwise the seeds' items are pooled. None where the reference's mean is 0
    (no ratio)."""
    if not arm_items or len(arm_items) != len(reference_items):
        raise ValueError(f"{metric}: one list of items per seed in both arms")
    if paired:
        a = np.mean(np.asarray(arm_items, dtype=float), axis=0)
        b = np.mean(np.asarray(reference_items, dtype=float), axis=0)
    else:
        a = np.concatenate([np.asarray(x, dtype=float) for x in arm_items])
        b = np.concatenate([np.asarray(x, dtype=float) for x in reference_items])
    if a.size == 0 or b.size == 0 or b.mean() == 0:
        return None
    interval = ratio_of_means(a, b, paired=paired)
    return Effect(
        metric=metric,
        arm=arm,
        reference=reference,
        iteration=iteration,
        ratio=round(interval.mean, 4),
        low=round(interval.low, 4),
        high=round(interval.high, 4),
        items=int(a.size if paired else a.size + b.size),
        seeds=len(arm_items),
        arm_mean=round(float(a.mean()), 4),
        reference_mean=round(float(b.mean()), 4),
    )


def held_out_effects(
    arm: str,
    iteration: int,
    per_seed: Sequence[tuple[dict[str, list[float]], dict[str, list[float]]]],
) -> list[Effect]:
    """`arm`'s held-out figures (pass@k per puzzle) over the base model's, one effect per
    figure, paired over puzzles: `per_seed` holds (the arm's, the base's) per-puzzle
    figures of each seed. Figures some seed lacks are left out."""
    effects = []
    for metric in per_seed[0][1] if per_seed else {}:
        arm_items = [step.get(metric, []) for step, _ in per_seed]
        base_items = [base.get(metric, []) for _, base in per_seed]
        if not all(arm_items) or not all(base_items):
            continue
        found = ratio_effect(metric, arm, "base", iteration, arm_items, base_items, paired=True)
        if found is not None:
            effects.append(found)
    return effects


def write_pooled_effects(
    out: Path, seeds: Sequence[int], effects: Sequence[Effect], title: str
) -> None:
    """The effects pooled over `seeds`: ``<out>/effects.json`` and ``effects.png``."""
    write_loop_record(
        out / "effects.json", {"seeds": list(seeds)}, effects=[e.as_json() for e in effects]
    )
    plot_effects(effects, out / "effects.png", title)


def plot_effects(effects: Sequence[Effect], path: Path, title: str) -> Path:
    """A forest plot: each effect's ratio with its 95% interval, and the line of no
    effect at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(effects) + 1.5))
    for row, e in enumerate(effects):
        color = "tab:green" if e.significant else "tab:gray"
        ax.errorbar(
            e.ratio,
            row,
            xerr=[[e.ratio - e.low], [e.high - e.ratio]],
            fmt="o",
            color=color,
            capsize=4,
        )
    ax.axvline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(
        range(len(effects)),
        [f"{e.metric}: {e.arm} {e.iteration} / {e.reference}" for e in effects],
    )
    ax.invert_yaxis()
    seeds = sorted({e.seeds for e in effects})
    ax.set(
        xlabel="ratio of means (95% bootstrap interval)",
        title=f"{title} ({'/'.join(map(str, seeds))} seed(s))",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
