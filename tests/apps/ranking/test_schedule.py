"""Pair schedulers: replayable, strict about order, and right on noiseless raters."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from openended.apps.ranking.schedule import (
    Judgment,
    KnockoutThenBT,
    MergeInsertionSort,
    RandomPairs,
    ScheduleError,
    bt_posterior,
    merge_insertion,
    p_best,
)


def run(scheduler, quality, limit: int = 1000) -> list[Judgment]:
    history: list[Judgment] = []
    while len(history) < limit:
        pair = scheduler.next_pair(history)
        if pair is None:
            break
        a, b = pair
        history.append(Judgment(a, b, "a" if quality[a] > quality[b] else "b"))
    return history


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 33, 64])
def test_merge_insertion_sorts_with_few_comparisons(n: int) -> None:
    items = list(range(n))
    random.Random(n).shuffle(items)
    count = 0

    def better(a: int, b: int) -> bool:
        nonlocal count
        count += 1
        return a > b

    assert merge_insertion(items, better) == sorted(items, reverse=True)
    if n > 1:  # Ford-Johnson's worst case is within a few of log2(n!)
        assert count <= math.ceil(math.log2(math.factorial(n))) + 6


def test_full_sort_scheduler_ranks_a_noiseless_rater_exactly() -> None:
    quality = np.random.default_rng(1).normal(size=20)
    scheduler = MergeInsertionSort(20, seed=3)
    history = run(scheduler, quality)
    assert scheduler.ranking(history) == list(np.argsort(-quality))
    assert scheduler.next_pair(history) is None


def test_knockout_finds_the_best_in_n_minus_1_and_bt_confirms_it() -> None:
    quality = np.random.default_rng(2).normal(size=16)
    knockout_only = KnockoutThenBT(16, budget=15, seed=0)
    history = run(knockout_only, quality)
    assert len(history) == 15 and knockout_only.next_pair(history) is None
    topped_up = KnockoutThenBT(16, budget=40, threshold=0.8, seed=0)
    history = run(topped_up, quality)
    assert 15 <= len(history) <= 40
    leader, probability = topped_up.leader(history)
    assert leader == int(np.argmax(quality))
    assert probability > 0.5


def test_replay_is_deterministic_and_rejects_out_of_order_judgments() -> None:
    scheduler = KnockoutThenBT(8, seed=5)
    first = scheduler.next_pair([])
    assert KnockoutThenBT(8, seed=5).next_pair([]) == first  # a restart gives the same pair
    a, b = first
    history = [Judgment(a, b, "a")]
    second = scheduler.next_pair(history)
    assert second is not None and set(second) != {a, b}
    wrong = [Judgment(*second, "a")]  # the second pair answered first
    with pytest.raises(ScheduleError, match="judgment 0 compares"):
        scheduler.next_pair(wrong)


def test_ties_are_settled_reproducibly() -> None:
    scheduler = MergeInsertionSort(6, seed=1)
    history: list[Judgment] = []
    while (pair := scheduler.next_pair(history)) is not None:
        history.append(Judgment(*pair, "tie"))
    assert scheduler.ranking(history) == scheduler.ranking(list(history))
    assert sorted(scheduler.ranking(history)) == list(range(6))


def test_bradley_terry_posterior_and_p_best() -> None:
    history = [Judgment(0, 1, "a")] * 6 + [Judgment(1, 2, "a")] * 6
    mean, cov = bt_posterior(3, history)
    assert mean[0] > mean[1] > mean[2]
    probabilities = p_best(mean, cov, seed=0)
    assert probabilities.sum() == pytest.approx(1.0)
    assert probabilities[0] > 0.6
    assert p_best(mean, cov, seed=0).tolist() == probabilities.tolist()


def test_random_pairs_spend_their_budget() -> None:
    scheduler = RandomPairs(10, budget=7, seed=0)
    history = run(scheduler, np.arange(10.0))
    assert len(history) == 7 and all(j.a != j.b for j in history)


def test_the_top_up_never_asks_the_same_pair_twice_in_a_row() -> None:
    rng = np.random.default_rng(4)
    quality = rng.normal(0, 0.3, 12)  # close qualities: the top-up has work to do
    scheduler = KnockoutThenBT(12, budget=40, threshold=1.0, seed=1)
    history: list[Judgment] = []
    while (pair := scheduler.next_pair(history)) is not None:
        if history:
            assert set(pair) != {history[-1].a, history[-1].b}
        a, b = pair
        p_a = 1 / (1 + np.exp(quality[b] - quality[a]))
        history.append(Judgment(a, b, "a" if rng.random() < p_a else "b"))
    assert len(history) == 40
