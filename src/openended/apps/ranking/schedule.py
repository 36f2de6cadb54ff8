"""Which pair to show next, when people pick the best of N outputs two at a time.

Every scheduler is a pure function of the judgments made so far (``next_pair(history)``):
it replays them, so a restarted server resumes each rater exactly where they were, and an
out-of-order or replayed submission can be detected by comparing it with the pair that
was due.

- `KnockoutThenBT`: a knockout bracket (N - 1 comparisons find a winner), then adaptive
  comparisons among the contenders, pairs chosen where the Bradley-Terry posterior is most
  unsure which is best (the pair of contenders with the largest P(i best) * P(j best);
  scores fitted with `choix`, expectation propagation), until the leader is the best with
  probability `threshold` or the budget is spent.
- `MergeInsertionSort`: a full ranking with merge-insertion (Ford & Johnson 1959), the
  comparison sort with the fewest comparisons for small N.
- `RandomPairs`: uniformly random pairs, the baseline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Result = Literal["a", "b", "tie", "both_bad"]


@dataclass(frozen=True)
class Judgment:
    """The rater saw `a` and `b` (item indices) and said which is better."""

    a: int
    b: int
    result: Result


class _NeedComparison(Exception):
    def __init__(self, a: int, b: int) -> None:
        self.pair = (a, b)


class _Replay:
    """A comparator that answers from the recorded judgments, in order, and stops the
    algorithm at the first comparison not made yet."""

    def __init__(self, history: Sequence[Judgment], seed: int) -> None:
        self.history = history
        self.used = 0
        self.seed = seed

    def better(self, a: int, b: int) -> bool:
        """Is `a` better than `b`? (A tie or 'both bad' is settled by a seeded coin.)"""
        if self.used >= len(self.history):
            raise _NeedComparison(a, b)
        judgment = self.history[self.used]
        if {judgment.a, judgment.b} != {a, b}:
            raise ScheduleError(
                f"judgment {self.used} compares {judgment.a} and {judgment.b}, but the pair due "
                f"was {a} and {b}"
            )
        self.used += 1
        if judgment.result in ("tie", "both_bad"):
            return _coin(self.seed, self.used, a, b)
        winner = judgment.a if judgment.result == "a" else judgment.b
        return winner == a


class ScheduleError(ValueError):
    """The judgments do not follow the schedule (replayed or out of order)."""


def _coin(seed: int, index: int, a: int, b: int) -> bool:
    key = f"{seed}:{index}:{min(a, b)}:{max(a, b)}".encode()
    return hashlib.sha256(key).digest()[0] % 2 == (0 if a < b else 1)


def wins(history: Sequence[Judgment]) -> list[tuple[int, int]]:
    """(winner, loser) pairs for a Bradley-Terry fit; a tie or 'both bad' counts as one
    win each way (evidence that the two are close)."""
    data: list[tuple[int, int]] = []
    for j in history:
        if j.result == "a":
            data.append((j.a, j.b))
        elif j.result == "b":
            data.append((j.b, j.a))
        else:
            data += [(j.a, j.b), (j.b, j.a)]
    return data


def bt_posterior(
    n: int, history: Sequence[Judgment], *, prior: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the Bradley-Terry scores (choix expectation propagation;
    `prior` is the precision of the Gaussian prior on each score)."""
    import choix

    if not history:
        return np.zeros(n), np.eye(n) / prior
    mean, cov = choix.ep_pairwise(n, wins(history), alpha=prior)
    return np.asarray(mean), np.asarray(cov)


def p_best(mean: np.ndarray, cov: np.ndarray, *, samples: int = 4000, seed: int = 0) -> np.ndarray:
    """P(item i has the highest score) under the Gaussian posterior (Monte Carlo)."""
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(mean, cov, size=samples, method="cholesky")
    counts = np.bincount(np.argmax(draws, axis=1), minlength=len(mean))
    return counts / samples


def knockout(n: int, better: object, order: Sequence[int]) -> int:
    """Run a knockout bracket over `order`; `better(a, b)` decides each match. Byes go to
    the last item of an odd round."""
    alive = list(order)
    while len(alive) > 1:
        survivors = []
        for k in range(0, len(alive) - 1, 2):
            a, b = alive[k], alive[k + 1]
            survivors.append(a if better(a, b) else b)  # type: ignore[operator]
        if len(alive) % 2:
            survivors.append(alive[-1])
        alive = survivors
    return alive[0]


class KnockoutThenBT:
    """Knockout bracket, then Bradley-Terry top-up among the contenders.

    Args:
        n: items.
        budget: most comparisons in all.
        threshold: stop when P(leader is the best) reaches this.
        contenders: how many of the top items (by posterior mean) the top-up compares.
        seed: the bracket order and tie coins.
    """

    def __init__(
        self,
        n: int,
        *,
        budget: int = 150,
        threshold: float = 0.9,
        contenders: int = 8,
        seed: int = 0,
    ) -> None:
        if n < 2:
            raise ValueError("ranking needs at least 2 items")
        self.n = n
        self.budget = max(budget, n - 1)
        self.threshold = threshold
        self.contenders = contenders
        self.seed = seed
        self.order = [int(i) for i in np.random.default_rng(seed).permutation(n)]

    def next_pair(self, history: Sequence[Judgment]) -> tuple[int, int] | None:
        """The next pair to show, or None when done."""
        replay = _Replay(history, self.seed)
        try:
            knockout(self.n, replay.better, self.order)
        except _NeedComparison as need:
            return need.pair
        if len(history) >= self.budget:
            return None
        mean, cov = bt_posterior(self.n, history)
        probabilities = p_best(mean, cov, seed=self.seed + len(history))
        if probabilities.max() >= self.threshold:
            return None
        top = [int(i) for i in np.argsort(-mean)[: self.contenders]]
        previous = {history[-1].a, history[-1].b}
        best_pair, best_value = None, -1.0
        for x in range(len(top)):
            for y in range(x + 1, len(top)):
                i, j = top[x], top[y]
                if {i, j} == previous:  # never the same pair twice in a row
                    continue
                value = probabilities[i] * probabilities[j]
                if value > best_value:
                    best_pair, best_value = (i, j), value
        return best_pair

    def leader(self, history: Sequence[Judgment]) -> tuple[int, float]:
        """The current best guess and the probability that it is the best."""
        if len(history) < self.n - 1:
            mean, _ = bt_posterior(self.n, history)
            return int(np.argmax(mean)), 0.0
        mean, cov = bt_posterior(self.n, history)
        probabilities = p_best(mean, cov, seed=self.seed + len(history))
        best = int(np.argmax(probabilities))
        return best, float(probabilities[best])

    def expected_comparisons(self) -> int:
        """For progress messages ("comparison 23 of about 70")."""
        return min(self.budget, self.n - 1 + max(8, self.n // 8))


def merge_insertion(items: Sequence[int], better: object) -> list[int]:
    """Sort best first with merge-insertion (Ford & Johnson 1959); `better(a, b)` compares."""

    def less(x: int, y: int) -> bool:  # x is worse than y
        return bool(better(y, x))  # type: ignore[operator]

    return list(reversed(_ford_johnson(list(items), less)))


def _ford_johnson(items: list[int], less: object) -> list[int]:
    """Ascending merge-insertion sort."""
    if len(items) <= 1:
        return items
    pairs = []
    for k in range(0, len(items) - 1, 2):
        x, y = items[k], items[k + 1]
        pairs.append((x, y) if less(x, y) else (y, x))  # type: ignore[operator]  # (small, large)
    leftover = items[-1] if len(items) % 2 else None
    larges = _ford_johnson([large for _, large in pairs], less)
    small_of = {large: small for small, large in pairs}
    chain = [small_of[larges[0]], *larges]  # b1 is below a1: no comparison needed
    pending = [small_of[large] for large in larges[1:]]  # pending[i] is b(i + 2)
    if leftover is not None:
        pending.append(leftover)
    for index in _insertion_order(len(pending)):
        item = pending[index]
        bound = chain.index(larges[index + 1]) if index + 1 < len(larges) else len(chain)
        low, high = 0, bound
        while low < high:
            mid = (low + high) // 2
            if less(item, chain[mid]):  # type: ignore[operator]
                high = mid
            else:
                low = mid + 1
        chain.insert(low, item)
    return chain


def _insertion_order(count: int) -> list[int]:
    """Indices of b2, b3, ... (0-based: b(i + 2) is index i) in merge-insertion's order:
    groups ending at the Jacobsthal numbers 3, 5, 11, 21, 43, ..., each from its end down."""
    order: list[int] = []
    previous, current = 1, 3
    while len(order) < count:
        for b in range(min(current, count + 1), previous, -1):
            order.append(b - 2)
        previous, current = current, current + 2 * previous
    return order


class MergeInsertionSort:
    """A full ranking by merge-insertion; about log2(N!) comparisons (296 for N = 64)."""

    def __init__(self, n: int, *, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.order = [int(i) for i in np.random.default_rng(seed).permutation(n)]

    def next_pair(self, history: Sequence[Judgment]) -> tuple[int, int] | None:
        replay = _Replay(history, self.seed)
        try:
            merge_insertion(self.order, replay.better)
        except _NeedComparison as need:
            return need.pair
        return None

    def ranking(self, history: Sequence[Judgment]) -> list[int]:
        return merge_insertion(self.order, _Replay(history, self.seed).better)


class RandomPairs:
    """Uniformly random distinct pairs (the baseline), `budget` of them."""

    def __init__(self, n: int, *, budget: int = 150, seed: int = 0) -> None:
        self.n = n
        self.budget = budget
        self.seed = seed

    def next_pair(self, history: Sequence[Judgment]) -> tuple[int, int] | None:
        if len(history) >= self.budget:
            return None
        rng = np.random.default_rng([self.seed, len(history)])
        a, b = rng.choice(self.n, size=2, replace=False)
        return int(a), int(b)
