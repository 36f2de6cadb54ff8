"""Finding the best of N = 64 outputs with simulated raters: P(the true best is chosen) and
P(the choice is in the true top 3) against comparisons used, for a knockout bracket,
knockout + Bradley-Terry top-up, merge-insertion sort and random pairs.

    python bench/ranking.py [--trials 40] [--n 64]

Raters follow Bradley-Terry: item i beats j with probability sigmoid(q_i - q_j), latent
qualities q ~ Normal(0, s^2) for spread s = 1 and 2, drawn afresh each trial (the same
draws for every method). Methods that can stop at any point are scored at several
comparison counts of one run ("at 100" = the choice after the first 100 comparisons).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from openended.apps.ranking.schedule import (
    Judgment,
    KnockoutThenBT,
    MergeInsertionSort,
    RandomPairs,
    bt_posterior,
)


def simulate(scheduler, quality: np.ndarray, rng: np.random.Generator) -> list[Judgment]:
    history: list[Judgment] = []
    while (pair := scheduler.next_pair(history)) is not None:
        a, b = pair
        p_a = 1.0 / (1.0 + np.exp(quality[b] - quality[a]))
        history.append(Judgment(a, b, "a" if rng.random() < p_a else "b"))
    return history


def bt_choice(n: int, history: list[Judgment]) -> int:
    mean, _ = bt_posterior(n, history)
    return int(np.argmax(mean))


def methods(n: int) -> dict[str, tuple[Callable[[int], object], Callable, list[int | None]]]:
    """name -> (make scheduler from a seed, choice(scheduler, history), checkpoints; None =
    wherever the method stopped)."""
    leader = lambda s, h: s.leader(h)[0]  # noqa: E731
    return {
        "knockout + BT top-up": (
            lambda seed: KnockoutThenBT(n, budget=150, threshold=1.0, seed=seed),
            leader,
            [n - 1, 100, 150],
        ),
        "knockout + BT, stop at 0.9": (
            lambda seed: KnockoutThenBT(n, budget=150, threshold=0.9, seed=seed),
            leader,
            [None],
        ),
        "merge-insertion sort": (
            lambda seed: MergeInsertionSort(n, seed=seed),
            lambda s, h: s.ranking(h)[0],
            [None],
        ),
        "random pairs + BT": (
            lambda seed: RandomPairs(n, budget=300, seed=seed),
            lambda s, h: bt_choice(n, h),
            [150, 300],
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    n = args.n
    print(f"N = {n}, {args.trials} trials per row (a P of 0.7 is +-0.07 at 1 sd)\n")
    print(f"{'spread s':>8}  {'method':<40}{'used':>8}{'P(best)':>9}{'P(top 3)':>10}")
    for spread in (1.0, 2.0):
        for name, (make, choose, checkpoints) in methods(n).items():
            rows: dict[int | None, list[tuple[int, bool, bool]]] = {c: [] for c in checkpoints}
            start = time.perf_counter()
            for trial in range(args.trials):
                rng = np.random.default_rng([int(spread * 10), trial])
                quality = rng.normal(0, spread, n)
                order = np.argsort(-quality)
                scheduler = make(trial)
                history = simulate(scheduler, quality, rng)
                for checkpoint in checkpoints:
                    used = history if checkpoint is None else history[:checkpoint]
                    pick = choose(scheduler, used)
                    rows[checkpoint].append((len(used), pick == order[0], pick in order[:3]))
            seconds = (time.perf_counter() - start) / args.trials
            for checkpoint, results in rows.items():
                used, best, top3 = (np.mean([r[k] for r in results]) for k in range(3))
                label = name if checkpoint is None else f"{name} (at {checkpoint})"
                if checkpoint == n - 1:
                    label = "knockout bracket alone"
                print(f"{spread:>8.0f}  {label:<40}{used:>8.1f}{best:>9.2f}{top3:>10.2f}")
            print(f"{'':>10}({seconds:.1f} s per trial)")


if __name__ == "__main__":
    main()
