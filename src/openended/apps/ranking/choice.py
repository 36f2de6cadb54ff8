"""Finding the best of N with multi-way screens: a Plackett-Luce posterior over the
answers, and a scheduler that picks the next set to show.

A screen shows K items; the rater picks the best (``best-of-K``), or the best and the
worst (``best-worst-K``, best-worst scaling, Louviere et al. 2015). Under the
Plackett-Luce model (Luce 1959; Plackett 1975) with scores theta, the best of a set S is
item b with probability exp(theta_b) / sum_S exp(theta_j), and the worst of the rest is w
with probability exp(-theta_w) / sum_{S - b} exp(-theta_j) (sequential best-worst; Marley
& Louviere 2005). A pair is the K = 2 case (Bradley-Terry). A best-of-K answer carries up
to log2(K) bits where a pair carries one (Saha & Gopalan, ALT 2019: top-m feedback from
K-sets cuts the comparisons needed by about m).

`pl_posterior` is the Laplace approximation of the posterior under a Gaussian prior
(Newton's method to the maximum a posteriori, whose log-likelihood is concave, and the
inverse Hessian there as the covariance): choix fits these models (``opt_top1``) but gives
no uncertainty, which the scheduler and P(best) need.

`ChoiceScheduler`: every item is shown once (a seeded partition into screens of K), then
each screen is the K-set whose answer is expected to tell the most about which item is
the best: the largest expected drop in the entropy of P(best) (information-directed
sampling, Russo & Van Roy 2018), estimated on posterior draws reweighted by each possible
answer's Plackett-Luce likelihood, over the sets drawn from the items likeliest to be the
best. An item that lost early stays a candidate as long as the posterior leaves it a real
chance. ``pick="thompson"`` instead shows the leader with K - 1 challengers drawn by
Thompson sampling (Russo's top-two Thompson sampling, 2016); ``bench/ranking.py`` measures
both. Like the pair schedulers it is a pure function of the answers so far, so a
restarted server resumes each rater exactly.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openended.apps.ranking.schedule import p_best

SCREEN_PATTERN = re.compile(r"(pair)|(best-of|best-worst)-(\d+)")
MIN_K, MAX_K = 3, 6
PRIOR = 0.25
"""Precision of the Normal prior on each score (sd 2): the scores of a few dozen outputs
spread over several units; it found the best more often than 0.5 or 1 at both spreads
that ``bench/ranking.py`` simulates. The scheduler and the session's scores share it."""


@dataclass(frozen=True)
class Screen:
    """What a rater is shown: `kind` ("pair", "best-of" or "best-worst") and `k` items."""

    kind: str
    k: int

    @property
    def name(self) -> str:
        return "pair" if self.kind == "pair" else f"{self.kind}-{self.k}"

    @property
    def asks_worst(self) -> bool:
        return self.kind == "best-worst"

    def comparisons(self) -> int:
        """Pairwise comparisons one answer implies: K - 1 for the best, K - 2 more for the
        worst (the best beat the worst already)."""
        return self.k - 1 + (self.k - 2 if self.asks_worst else 0)


def parse_screen(spec: str) -> Screen:
    """``pair``, ``best-of-K`` or ``best-worst-K`` (K = 3..6)."""
    match = SCREEN_PATTERN.fullmatch(spec.strip())
    if match is None:
        raise ValueError(
            f"screen {spec!r}: use pair, best-of-K or best-worst-K (K = {MIN_K}..{MAX_K})"
        )
    if match.group(1):
        return Screen("pair", 2)
    k = int(match.group(3))
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"screen {spec!r}: K must be {MIN_K}..{MAX_K}, got {k}")
    return Screen(match.group(2), k)


@dataclass(frozen=True)
class Choice:
    """One answer: the items `shown` (indices), the one picked as best (None: no
    preference, a tie on a pair), and the one picked as worst (None where the screen does
    not ask)."""

    shown: tuple[int, ...]
    best: int | None
    worst: int | None = None

    def implied_pairs(self) -> list[tuple[int, int]]:
        """(winner, loser) pairs the answer implies: the best over every other item, and
        every other item over the worst."""
        if self.best is None:
            return []
        pairs = [(self.best, j) for j in self.shown if j != self.best]
        if self.worst is not None:
            pairs += [(j, self.worst) for j in self.shown if j not in (self.best, self.worst)]
        return pairs


def _softmax_terms(
    theta: np.ndarray, sets: np.ndarray, picked: np.ndarray, sign: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and negated Hessian of the log-likelihood of picking `picked[r]` from each
    row of `sets` with probabilities softmax(sign * theta[set])."""
    values = sign * theta[sets]  # (m, K)
    weights = np.exp(values - values.max(axis=1, keepdims=True))
    p = weights / weights.sum(axis=1, keepdims=True)
    chosen = sets == picked[:, None]
    n = theta.shape[0]
    gradient = np.zeros(n)
    np.add.at(gradient, sets, sign * (chosen - p))
    curvature = np.zeros((n, n))
    outer = p[:, :, None] * p[:, None, :]
    block = -outer
    idx = np.arange(sets.shape[1])
    block[:, idx, idx] += p
    np.add.at(curvature, (sets[:, :, None], sets[:, None, :]), block)
    return gradient, curvature


def _grouped(choices: Sequence[Choice]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(sets, picked, sign) arrays, one per set size: best answers (sign +1) and worst
    answers over the items left once the best is taken (sign -1)."""
    groups: dict[tuple[int, float], tuple[list[tuple[int, ...]], list[int]]] = {}
    for choice in choices:
        if choice.best is None:  # no preference: no evidence either way
            continue
        entry = groups.setdefault((len(choice.shown), 1.0), ([], []))
        entry[0].append(choice.shown)
        entry[1].append(choice.best)
        if choice.worst is not None:
            rest = tuple(j for j in choice.shown if j != choice.best)
            entry = groups.setdefault((len(rest), -1.0), ([], []))
            entry[0].append(rest)
            entry[1].append(choice.worst)
    return [
        (np.asarray(sets, dtype=np.intp), np.asarray(picked, dtype=np.intp), sign)
        for (_, sign), (sets, picked) in groups.items()
    ]


def pl_posterior(
    n: int, choices: Sequence[Choice], *, prior: float = PRIOR, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the Plackett-Luce scores under a Normal(0, 1/prior) prior
    on each score (Laplace approximation at the maximum a posteriori)."""
    groups = _grouped(choices)
    if not groups:
        return np.zeros(n), np.eye(n) / prior
    theta = np.zeros(n)
    precision = np.eye(n) * prior
    for _ in range(iterations):
        gradient = -prior * theta
        precision = np.eye(n) * prior
        for sets, picked, sign in groups:
            g, h = _softmax_terms(theta, sets, picked, sign)
            gradient += g
            precision += h
        step = np.linalg.solve(precision, gradient)
        theta = theta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    covariance = np.linalg.inv(precision)
    return theta, (covariance + covariance.T) / 2


class ChoiceScheduler:
    """Coverage, then the most informative sets (see the module).

    Args:
        n: items.
        screen: the screen type (its K items per screen; a pair is K = 2).
        budget: most item views (items shown, summed over screens).
        threshold: stop when P(leader is the best) reaches this.
        seed: the coverage order and the Thompson draws.
        prior: precision of the Normal prior on each score (`PRIOR`).
        bracket: a K-way knockout (the best of each screen goes on) instead of the single
            first pass; measured in ``bench/ranking.py``, within noise of the single pass
            (with either pick).
        narrow: once the two likeliest items hold this much of P(best), show just them as
            a pair; measured likewise, within noise.
        pick: how the adaptive screens are chosen: ``"information"`` (of the K-sets
            drawn from the `pool` likeliest items, the one whose answer is expected to
            shrink the entropy of P(best) the most: `informative_set`; P(best) 0.84
            against 0.795 for Thompson at s = 2 in ``bench/ranking.py``) or
            ``"thompson"`` (the leader and Thompson-sampled challengers).
        pool: how many of the likeliest items the informative sets are drawn from.
        mixed: let pairs compete with K-sets on information per item shown (measured in
            ``bench/ranking.py``).
    """

    def __init__(
        self,
        n: int,
        screen: Screen,
        *,
        budget: int = 300,
        threshold: float = 0.9,
        seed: int = 0,
        prior: float = PRIOR,
        bracket: bool = False,
        narrow: float | None = None,
        pick: str = "information",
        pool: int = 8,
        mixed: bool = False,
    ) -> None:
        if pick not in ("thompson", "information"):
            raise ValueError(f"pick {pick!r}: use thompson or information")
        if n < 2:
            raise ValueError("ranking needs at least 2 items")
        self.n = n
        self.screen = screen
        self.k = min(screen.k, n)
        self.budget = budget
        self.threshold = threshold
        self.seed = seed
        self.prior = prior
        self.bracket = bracket
        self.narrow = narrow
        self.pick = pick
        self.pool = pool
        self.sizes = (2, self.k) if mixed else None
        rng = np.random.default_rng(seed)
        order = [int(i) for i in rng.permutation(n)]
        self.order = order
        self.coverage: list[tuple[int, ...]] = []
        for start in range(0, n, self.k):
            chunk = order[start : start + self.k]
            if len(chunk) < self.k:  # fill the last screen with items shown already
                chunk += [i for i in order if i not in chunk][: self.k - len(chunk)]
            self.coverage.append(tuple(chunk))

    def views(self, history: Sequence[Choice]) -> int:
        return sum(len(c.shown) for c in history)

    def check(self, history: Sequence[Choice]) -> None:
        """Refuse a history whose screens are not the ones this scheduler showed."""
        for step, choice in enumerate(history):
            due = self.next_set(history[:step])
            if due is None or set(due) != set(choice.shown):
                raise ValueError(f"answer {step} is for items {choice.shown}, not those due")

    def posterior(self, history: Sequence[Choice]) -> tuple[np.ndarray, np.ndarray]:
        return pl_posterior(self.n, history, prior=self.prior)

    def _bracket_due(self, history: Sequence[Choice]) -> tuple[tuple[int, ...] | None, int]:
        """Replay the K-way knockout (the best of each screen goes on; a short last screen
        is filled with the previous round's runners-up): the screen due in it, or None
        when it is over, and the screens it took."""
        alive, step = list(self.order), 0
        runners_up: list[int] = []
        while len(alive) > 1:
            winners, seconds = [], []
            for start in range(0, len(alive), self.k):
                chunk = alive[start : start + self.k]
                if len(chunk) == 1 and start > 0:  # a bye
                    winners.append(chunk[0])
                    continue
                fill = [i for i in runners_up + self.order if i not in chunk]
                chunk += fill[: self.k - len(chunk)]
                if step == len(history):
                    return tuple(chunk), step
                best = history[step].best
                winner = best if best is not None else chunk[0]
                winners.append(winner)
                seconds += [i for i in chunk if i != winner][:1]
                step += 1
            alive, runners_up = winners, seconds
        return None, step

    def next_set(self, history: Sequence[Choice]) -> tuple[int, ...] | None:
        """The items of the next screen (in no particular order), or None when done."""
        step = len(history)
        if self.bracket:
            due, _ = self._bracket_due(history)
            if due is not None:
                return due
        elif step < len(self.coverage):
            return self.coverage[step]
        if self.views(history) + self.k > self.budget:
            return None
        mean, cov = self.posterior(history)
        probabilities = p_best(mean, cov, seed=self.seed + step)
        if probabilities.max() >= self.threshold:
            return None
        ranked = np.argsort(-probabilities, kind="stable")  # ties: as argmax
        if self.narrow is not None and probabilities[ranked[:2]].sum() >= self.narrow:
            return (int(ranked[0]), int(ranked[1]))  # two items hold the question: just them
        if self.pick == "information":
            draws = np.random.default_rng([self.seed, step, 11]).multivariate_normal(
                mean, cov, size=1000, method="cholesky"
            )
            return informative_set(
                draws, self.k, self.screen.asks_worst, pool=self.pool, sizes=self.sizes
            )
        return self._thompson_set(mean, cov, int(ranked[0]), step)

    def _thompson_set(
        self, mean: np.ndarray, cov: np.ndarray, leader: int, step: int
    ) -> tuple[int, ...]:
        chosen = [leader]
        rng = np.random.default_rng([self.seed, step, 7])
        chol = np.linalg.cholesky(cov + 1e-9 * np.eye(self.n))
        while len(chosen) < self.k:  # each challenger the best of one posterior draw
            draw = mean + chol @ rng.standard_normal(self.n)
            draw[chosen] = -np.inf
            chosen.append(int(np.argmax(draw)))
        return tuple(chosen)

    def leader(self, history: Sequence[Choice]) -> tuple[int, float]:
        """The current best guess and the probability that it is the best."""
        mean, cov = self.posterior(history)
        if len(history) < len(self.coverage):
            return int(np.argmax(mean)), 0.0
        probabilities = p_best(mean, cov, seed=self.seed + len(history))
        best = int(np.argmax(probabilities))
        return best, float(probabilities[best])

    def expected_screens(self) -> int:
        """For progress messages ("screen 12 of about 40")."""
        return max(len(self.coverage), self.budget // self.k)


def outcome_likelihoods(scores: np.ndarray, asks_worst: bool) -> np.ndarray:
    """P(each possible answer | scores) under Plackett-Luce, for rows of sampled scores
    (S, K): columns are the best picks (K) or, with a worst pick, the ordered (best,
    worst) pairs (K (K - 1))."""
    up = np.exp(scores - scores.max(axis=1, keepdims=True))
    best = up / up.sum(axis=1, keepdims=True)
    if not asks_worst:
        return best
    down = np.exp(scores.min(axis=1, keepdims=True) - scores)
    columns = []
    k = scores.shape[1]
    for b in range(k):
        rest = down.sum(axis=1) - down[:, b]
        columns += [best[:, b] * down[:, w] / rest for w in range(k) if w != b]
    return np.stack(columns, axis=1)


def informative_set(
    draws: np.ndarray,
    k: int,
    asks_worst: bool,
    *,
    pool: int = 8,
    sizes: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """The K-set whose answer most reduces the expected entropy of P(best) (the
    information-directed choice of Russo & Van Roy 2018, applied to best-item
    identification), estimated on posterior draws (S, n) reweighted by each answer's
    likelihood. The sets are drawn from the `pool` items most often best in the draws
    (filled up by mean score). With `sizes`, sets of each of those sizes compete on the
    entropy drop per item shown."""
    winners = np.argmax(draws, axis=1)
    counts = np.bincount(winners, minlength=draws.shape[1])
    order = np.lexsort((-draws.mean(axis=0), -counts))
    candidates = [int(i) for i in order[: max(pool, k)]]
    contenders, index = np.unique(winners, return_inverse=True)
    onehot = np.zeros((len(winners), len(contenders)))
    onehot[np.arange(len(winners)), index] = 1.0
    now = counts[contenders] / len(winners)
    entropy_now = float(-(now * np.log(now)).sum())
    best_set, most = tuple(candidates[:k]), -math.inf
    for size in sizes or (k,):
        for combo in itertools.combinations(candidates, size):
            likelihood = outcome_likelihoods(draws[:, combo], asks_worst)  # (S, answers)
            mass = onehot.T @ likelihood  # (contenders, answers): P(best = i, answer)
            answer = mass.sum(axis=0)
            p = mass / np.maximum(answer, 1e-300)
            entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=0)
            gain = (entropy_now - float(answer @ entropy / answer.sum())) / size
            if gain > most + 1e-12:
                best_set, most = combo, gain
    return tuple(best_set)


def default_views(n: int) -> int:
    """Item views per prompt and rater: 300 for 64 candidates (what 150 pairs show), in
    proportion otherwise."""
    return max(n, math.ceil(300 * (n - 1) / 63))
