"""Finding the best of N = 64 outputs with simulated raters, by screen type: P(the true
best is chosen) and P(the choice is in the true top 3) against screens, item views and the
comparisons the answers imply.

    python bench/ranking.py [--trials 200] [--n 64] [--workers 2] [--views 300]

Raters follow Plackett-Luce: on a screen of items S the rater picks i as the best with
probability exp(q_i) / sum_S exp(q_j), and (best-worst screens) the worst of the rest with
probability exp(-q_w) / sum exp(-q_j); a pair is the K = 2 case (Bradley-Terry). Latent
qualities q ~ Normal(0, s^2) for spread s = 1 and 2, drawn afresh each trial (the same
draws for every method). Each method runs to 300 item views (what 150 pairwise
comparisons show; ``--views`` for another budget) and is scored at several view counts of
one run ("at 200" = its choice after the screens that fit in the first 200 views). Rows:

- ``knockout + BT (today)``: the app's pair schedule before multi-way screens, a knockout
  bracket, then Bradley-Terry top-up among 8 contenders (choix EP);
- ``pair`` / ``best-of-4`` / ``best-worst-4``: every item once, then the leader against
  Thompson-sampled challengers under the Plackett-Luce posterior (`ChoiceScheduler` with
  ``pick="thompson"``);
- ``best-worst-4, information``: every item once, then the set whose answer is expected
  to shrink the entropy of P(best) the most (``pick="information"``, the app's default);
- ``... stop at 0.9``: stopping once P(leader is best) >= 0.9, as the app does;
- (with ``--methods``) ``..., bracket first``: a K-way knockout (the best of each screen
  goes on) instead of the single first pass, then the same Thompson top-up;
  ``best-worst-4, bracket, information`` (the knockout, then informative sets);
  ``..., pairs mixed in`` (pairs compete with sets of 4 on information per item shown);
  ``..., pool 12`` (informative sets drawn from the 12 likeliest, not 8);
  ``best-of-4, information``; ``..., pairs at`` (the leader and runner-up as a pair once
  they hold that much of P(best)); and ``best-worst-3`` / ``-5`` / ``-6``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from openended.apps.ranking.choice import Choice, ChoiceScheduler, parse_screen
from openended.apps.ranking.schedule import Judgment, KnockoutThenBT

VIEWS = 300  # what 150 pairwise comparisons show; --views sets another budget
CHECKPOINTS = (150, 200, 300)


def set_views(views: int) -> None:
    """Run each method to `views` item views, scored at 150, 200, 300 and `views`."""
    global VIEWS, CHECKPOINTS
    VIEWS = views
    CHECKPOINTS = tuple(sorted({p for p in (150, 200, 300) if p < views} | {views}))


def pick(quality: np.ndarray, shown: Sequence[int], worst: bool, rng) -> Choice:
    """A Plackett-Luce rater's answer to a screen."""
    items = np.asarray(shown)
    p = np.exp(quality[items] - quality[items].max())
    best = int(rng.choice(items, p=p / p.sum()))
    bad = None
    if worst:
        rest = items[items != best]
        p = np.exp(quality[rest].min() - quality[rest])
        bad = int(rng.choice(rest, p=p / p.sum()))
    return Choice(tuple(int(i) for i in shown), best, bad)


def run_choice(
    spec: str,
    threshold: float,
    bracket: bool = False,
    narrow: float | None = None,
    pick_by: str = "thompson",
    mixed: bool = False,
    pool: int = 8,
) -> Callable[[np.ndarray, int, Any], dict]:
    def run(quality: np.ndarray, seed: int, rng) -> dict:
        scheduler = ChoiceScheduler(
            len(quality),
            parse_screen(spec),
            budget=VIEWS,
            threshold=threshold,
            seed=seed,
            bracket=bracket,
            narrow=narrow,
            pick=pick_by,
            mixed=mixed,
            pool=pool,
        )
        history: list[Choice] = []
        while (shown := scheduler.next_set(history)) is not None:
            history.append(pick(quality, shown, scheduler.screen.asks_worst, rng))
        return score(history, lambda h: scheduler.leader(h)[0], threshold < 1)

    return run


def run_knockout(quality: np.ndarray, seed: int, rng) -> dict:
    scheduler = KnockoutThenBT(len(quality), budget=VIEWS // 2, threshold=1.0, seed=seed)
    history: list[Judgment] = []
    while (pair := scheduler.next_pair(history)) is not None:
        choice = pick(quality, pair, False, rng)
        history.append(Judgment(pair[0], pair[1], "a" if choice.best == pair[0] else "b"))
    as_choices = [Choice((j.a, j.b), j.a if j.result == "a" else j.b) for j in history]
    return score(as_choices, lambda h: scheduler.leader(history[: len(h)])[0], stopped_early=False)


def score(history: list[Choice], leader: Callable[[list[Choice]], int], stopped_early: bool):
    """The choice, screens, views and comparisons at each checkpoint (or where it stopped)."""
    out = {}
    points = [None] if stopped_early else list(CHECKPOINTS)
    for point in points:
        used, views = [], 0
        for choice in history:
            if point is not None and views + len(choice.shown) > point:
                break
            used.append(choice)
            views += len(choice.shown)
        out[point] = {
            "pick": leader(used),
            "screens": len(used),
            "views": views,
            "comparisons": sum(len(c.implied_pairs()) for c in used),
        }
    return out


METHODS: dict[str, Callable[[np.ndarray, int, Any], dict]] = {
    "knockout + BT (today)": run_knockout,
    "pair": run_choice("pair", 1.0),
    "best-of-4": run_choice("best-of-4", 1.0),
    "best-worst-4": run_choice("best-worst-4", 1.0),
    "best-worst-4, stop at 0.9": run_choice("best-worst-4", 0.9),
    "best-worst-4, information": run_choice("best-worst-4", 1.0, pick_by="information"),
    "best-worst-4, information, stop at 0.9": run_choice(
        "best-worst-4", 0.9, pick_by="information"
    ),
    "pair, bracket first": run_choice("pair", 1.0, bracket=True),
    "best-of-4, bracket first": run_choice("best-of-4", 1.0, bracket=True),
    "best-worst-4, bracket first": run_choice("best-worst-4", 1.0, bracket=True),
    "best-worst-4, bracket, information": run_choice(
        "best-worst-4", 1.0, bracket=True, pick_by="information"
    ),
    "best-worst-4, information, pairs mixed in": run_choice(
        "best-worst-4", 1.0, pick_by="information", mixed=True
    ),
    "best-worst-4, information, pool 12": run_choice(
        "best-worst-4", 1.0, pick_by="information", pool=12
    ),
    "best-of-4, information": run_choice("best-of-4", 1.0, pick_by="information"),
    **{f"best-worst-{k}": run_choice(f"best-worst-{k}", 1.0) for k in (3, 5, 6)},
    **{
        f"best-worst-4, pairs at {level}": run_choice("best-worst-4", 1.0, narrow=level)
        for level in (0.7, 0.85)
    },
}


def trial(job: tuple[str, float, int, int]) -> tuple[str, float, dict, float]:
    name, spread, index, n = job
    rng = np.random.default_rng([int(spread * 10), index])
    quality = rng.normal(0, spread, n)
    order = np.argsort(-quality)
    start = time.perf_counter()
    results = METHODS[name](quality, index, rng)
    for entry in results.values():
        entry["best"] = entry["pick"] == order[0]
        entry["top3"] = entry["pick"] in order[:3]
    return name, spread, results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=sorted(METHODS),
        default=list(METHODS)[:7],
        help="default: today's pairs, the pair / best-of-4 / best-worst-4 screens (Thompson "
        "challengers) and best-worst-4 with the most informative sets (the app's default)",
    )
    parser.add_argument("--spreads", nargs="+", type=float, default=[1.0, 2.0])
    parser.add_argument("--views", type=int, default=VIEWS, help="item views per trial")
    args = parser.parse_args()
    set_views(args.views)
    jobs = [
        (name, spread, index, args.n)
        for spread in args.spreads
        for name in args.methods
        for index in range(args.trials)
    ]
    collected: dict[tuple[str, float], list[tuple[dict, float]]] = {}
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=set_views, initargs=(args.views,)) as pool:
        for done, (name, spread, results, seconds) in enumerate(
            pool.map(trial, jobs, chunksize=4), 1
        ):
            collected.setdefault((name, spread), []).append((results, seconds))
            if done % 100 == 0:
                elapsed = time.perf_counter() - started
                print(f"  {done}/{len(jobs)} trials, {elapsed / 60:.1f} min", flush=True)
    se = 0.5 / np.sqrt(args.trials)
    print(
        f"\nN = {args.n}, {args.trials} trials per row (a P near 0.5 is +-{se:.3f} at 1 sd); "
        "Plackett-Luce raters\n"
    )
    header = (
        f"{'s':>3}  {'method':<34}{'screens':>8}{'views':>7}{'comparisons':>12}"
        f"{'P(best)':>9}{'P(top 3)':>10}{'s/trial':>8}"
    )
    print(header)
    for (name, spread), rows in collected.items():
        seconds = np.mean([s for _, s in rows])
        for point in rows[0][0]:
            entries = [r[point] for r, _ in rows]
            label = name if point is None else f"{name} (at {point})"
            mean = {key: np.mean([e[key] for e in entries]) for key in entries[0] if key != "pick"}
            print(
                f"{spread:>3.0f}  {label:<34}{mean['screens']:>8.1f}{mean['views']:>7.1f}"
                f"{mean['comparisons']:>12.1f}{mean['best']:>9.3f}{mean['top3']:>10.3f}"
                f"{seconds:>8.1f}"
            )


if __name__ == "__main__":
    main()
