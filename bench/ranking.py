"""Finding the best of N = 64 outputs with simulated raters: P(the true best is chosen) and
P(the choice is in the true top 3) against comparisons used, for a knockout bracket,
knockout + Bradley-Terry top-up, merge-insertion sort and random pairs.

    python bench/ranking.py [--trials 40] [--n 64]

Raters follow Bradley-Terry: item i beats j with probability sigmoid(q_i - q_j), latent
qualities q ~ Normal(0, s^2) for spread s = 1 and 2, drawn afresh each trial.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from openended.ranking.schedule import (
    Judgment,
    KnockoutThenBT,
    MergeInsertionSort,
    RandomPairs,
    _Replay,
    bt_posterior,
    knockout,
)


def simulate(scheduler, quality: np.ndarray, rng: np.random.Generator) -> list[Judgment]:
    history: list[Judgment] = []
    while True:
        pair = scheduler.next_pair(history)
        if pair is None:
            return history
        a, b = pair
        p_a = 1.0 / (1.0 + np.exp(quality[b] - quality[a]))
        history.append(Judgment(a, b, "a" if rng.random() < p_a else "b"))


def choice(kind: str, scheduler, history: list[Judgment], n: int) -> int:
    """The item each method would call the best."""
    if kind == "sort":
        return scheduler.ranking(history)[0]
    if kind == "knockout":
        return knockout(n, _Replay(history, scheduler.seed).better, scheduler.order)
    if kind == "knockout+bt":
        return scheduler.leader(history)[0]
    mean, _ = bt_posterior(n, history)
    return int(np.argmax(mean))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    n = args.n
    methods = {
        "knockout": ("knockout", lambda seed: KnockoutThenBT(n, budget=n - 1, seed=seed)),
        "knockout + BT (<=150)": (
            "knockout+bt",
            lambda seed: KnockoutThenBT(n, budget=150, threshold=0.95, seed=seed),
        ),
        "merge-insertion sort": ("sort", lambda seed: MergeInsertionSort(n, seed=seed)),
        "random pairs (150) + BT": ("bt", lambda seed: RandomPairs(n, budget=150, seed=seed)),
    }
    print(f"N = {n}, {args.trials} trials per row\n")
    header = f"{'spread s':>8}  {'method':<26}{'comparisons':>12}{'P(best)':>9}{'P(top 3)':>10}"
    print(header + f"{'s/trial':>9}")
    for spread in (1.0, 2.0):
        for name, (kind, make) in methods.items():
            best_hits = top3_hits = 0
            used = []
            start = time.perf_counter()
            for trial in range(args.trials):
                rng = np.random.default_rng([int(spread * 10), trial])
                quality = rng.normal(0, spread, n)
                scheduler = make(trial)
                history = simulate(scheduler, quality, rng)
                pick = choice(kind, scheduler, history, n)
                order = np.argsort(-quality)
                best_hits += pick == order[0]
                top3_hits += pick in order[:3]
                used.append(len(history))
            seconds = (time.perf_counter() - start) / args.trials
            print(
                f"{spread:>8.0f}  {name:<26}{np.mean(used):>12.1f}{best_hits / args.trials:>9.2f}"
                f"{top3_hits / args.trials:>10.2f}{seconds:>9.2f}"
            )


if __name__ == "__main__":
    main()
