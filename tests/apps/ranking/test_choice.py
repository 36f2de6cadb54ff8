"""Multi-way screens: the Plackett-Luce posterior and the scheduler that picks each set."""

from __future__ import annotations

import choix
import numpy as np
import pytest

from openended.apps.ranking.choice import (
    Choice,
    ChoiceScheduler,
    Screen,
    informative_set,
    outcome_likelihoods,
    parse_screen,
    pl_posterior,
)


def noiseless(quality: np.ndarray, shown: tuple[int, ...], worst: bool) -> Choice:
    ordered = sorted(shown, key=lambda i: -quality[i])
    return Choice(shown, ordered[0], ordered[-1] if worst else None)


def run(scheduler: ChoiceScheduler, quality: np.ndarray) -> list[Choice]:
    history: list[Choice] = []
    while (shown := scheduler.next_set(history)) is not None:
        assert len(shown) == len(set(shown)) == scheduler.k
        history.append(noiseless(quality, shown, scheduler.screen.asks_worst))
    return history


@pytest.mark.parametrize(
    ("spec", "screen"),
    [
        ("pair", Screen("pair", 2)),
        ("best-of-4", Screen("best-of", 4)),
        ("best-worst-3", Screen("best-worst", 3)),
        (" best-worst-6 ", Screen("best-worst", 6)),
    ],
)
def test_screen_names_parse(spec: str, screen: Screen) -> None:
    assert parse_screen(spec) == screen
    assert parse_screen(screen.name) == screen


@pytest.mark.parametrize(
    ("spec", "message"),
    [("best-of-2", "K must be 3..6"), ("best-worst-7", "K must be 3..6"), ("top-4", "use pair")],
)
def test_bad_screen_names_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_screen(spec)


def test_an_answer_implies_k_minus_1_or_2k_minus_3_comparisons() -> None:
    best_of = Choice((4, 1, 7, 2), best=7)
    assert sorted(best_of.implied_pairs()) == [(7, 1), (7, 2), (7, 4)]
    best_worst = Choice((4, 1, 7, 2), best=7, worst=1)
    assert sorted(best_worst.implied_pairs()) == [(2, 1), (4, 1), (7, 1), (7, 2), (7, 4)]
    assert Screen("best-of", 4).comparisons() == 3
    assert Screen("best-worst", 4).comparisons() == 5
    assert Screen("pair", 2).comparisons() == 1


def test_the_posterior_mode_is_choix_maximum_a_posteriori() -> None:
    """Best-of-K answers: the Laplace mean is the MAP that choix finds (choix penalises
    alpha * ||theta||^2, so alpha is half the prior precision)."""
    rng = np.random.default_rng(3)
    quality = rng.normal(0, 1, 12)
    choices, data = [], []
    for _ in range(80):
        shown = tuple(int(i) for i in rng.choice(12, 4, replace=False))
        p = np.exp(quality[list(shown)])
        best = int(rng.choice(shown, p=p / p.sum()))
        choices.append(Choice(shown, best))
        data.append((best, tuple(i for i in shown if i != best)))
    mean, cov = pl_posterior(12, choices, prior=0.5)
    reference = choix.opt_top1(12, data, alpha=0.25, tol=1e-10)
    np.testing.assert_allclose(mean, reference, atol=1e-5)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    # More answers, less uncertainty.
    _, fewer = pl_posterior(12, choices[:20], prior=0.5)
    assert np.trace(cov) < np.trace(fewer)


def test_worst_answers_are_evidence_against_the_worst() -> None:
    shown = (0, 1, 2)
    best_only, _ = pl_posterior(3, [Choice(shown, 0)] * 5)
    with_worst, _ = pl_posterior(3, [Choice(shown, 0, 2)] * 5)
    assert best_only[1] == pytest.approx(best_only[2])  # nothing tells 1 from 2
    assert with_worst[0] > with_worst[1] > with_worst[2]


@pytest.mark.parametrize("pick", ["thompson", "information"])
@pytest.mark.parametrize("spec", ["pair", "best-of-3", "best-of-4", "best-worst-4", "best-worst-6"])
def test_a_noiseless_rater_finds_the_best_with_every_screen(spec: str, pick: str) -> None:
    for seed in range(3):
        quality = np.random.default_rng(seed).permutation(24).astype(float)
        scheduler = ChoiceScheduler(24, parse_screen(spec), budget=120, seed=seed, pick=pick)
        history = run(scheduler, quality)
        assert scheduler.leader(history)[0] == int(np.argmax(quality))
        assert scheduler.views(history) <= 120
        # every item was shown at least once (the coverage screens)
        assert set().union(*(c.shown for c in history)) == set(range(24))


def test_the_schedule_is_a_pure_function_of_the_answers() -> None:
    """A restarted scheduler (same seed) asks for the same sets after the same answers;
    another seed shows other sets."""
    quality = np.random.default_rng(0).normal(0, 2, 16)
    first = ChoiceScheduler(16, parse_screen("best-worst-4"), budget=80, threshold=1.0, seed=5)
    history = run(first, quality)
    again = ChoiceScheduler(16, parse_screen("best-worst-4"), budget=80, threshold=1.0, seed=5)
    for step in range(len(history)):
        assert set(again.next_set(history[:step])) == set(history[step].shown)
    again.check(history)
    other = ChoiceScheduler(16, parse_screen("best-worst-4"), budget=80, threshold=1.0, seed=6)
    assert [other.next_set(history[:s]) for s in range(4)] != [c.shown for c in history[:4]]
    with pytest.raises(ValueError, match="answer 0 is for items"):
        other.check(history)


@pytest.mark.parametrize("worst", [False, True])
def test_answer_likelihoods_are_plackett_luce_and_sum_to_one(worst: bool) -> None:
    scores = np.random.default_rng(0).normal(0, 2, (5, 4))
    likelihood = outcome_likelihoods(scores, worst)
    assert likelihood.shape == (5, 12 if worst else 4)
    np.testing.assert_allclose(likelihood.sum(axis=1), 1.0)
    # the first column: item 0 best (and, with a worst pick, item 1 worst of the rest)
    up = np.exp(scores)
    expected = up[:, 0] / up.sum(axis=1)
    if worst:
        down = np.exp(-scores[:, 1:])
        expected = expected * down[:, 0] / down.sum(axis=1)
    np.testing.assert_allclose(likelihood[:, 0], expected)


def test_the_informative_set_holds_the_contenders() -> None:
    """Posterior draws where items 3, 7, 9 and 12 share the chance of being the best and
    the rest have none: the most informative screen of 4 shows those four, a pair two of
    them, and the items with no chance never."""
    rng = np.random.default_rng(1)
    draws = rng.normal(0, 0.3, (1000, 20))
    contenders = [3, 7, 9, 12]
    draws[:, contenders] += 3 + rng.normal(0, 1, (1000, 4))
    assert set(informative_set(draws, 4, True)) == set(contenders)
    assert set(informative_set(draws, 2, False)) <= set(contenders)
    # one clear leader: the set still includes it (its answer tells most about it)
    draws[:, 7] += 2.5
    assert 7 in informative_set(draws, 3, False)


@pytest.mark.parametrize("pick", ["thompson", "information"])
def test_an_item_that_lost_early_is_drawn_again(pick: str) -> None:
    """The true best loses its first screen (a rater's slip); the scheduler brings it
    back while the posterior still gives it a chance, and it ends as the leader."""
    quality = np.arange(16, dtype=float)
    scheduler = ChoiceScheduler(16, parse_screen("best-of-4"), budget=120, seed=1, pick=pick)
    history: list[Choice] = []
    slipped = False
    while (shown := scheduler.next_set(history)) is not None:
        answer = noiseless(quality, shown, False)
        if 15 in shown and not slipped:  # the best's first screen goes to the runner-up
            slipped = True
            second = sorted(shown, key=lambda i: -quality[i])[1]
            answer = Choice(shown, second)
        history.append(answer)
    appearances = sum(15 in c.shown for c in history)
    assert slipped and appearances >= 2
    assert scheduler.leader(history)[0] == 15


def test_it_stops_when_the_leader_is_clear_or_the_views_are_spent() -> None:
    quality = np.arange(32, dtype=float) * 3  # far apart: a noiseless rater settles it fast
    clear = ChoiceScheduler(32, parse_screen("best-of-4"), budget=1000, threshold=0.9, seed=0)
    history = run(clear, quality)
    assert clear.leader(history)[1] >= 0.9 and clear.views(history) < 1000
    tight = ChoiceScheduler(32, parse_screen("best-of-4"), budget=40, threshold=1.0, seed=0)
    assert tight.views(run(tight, quality)) <= 40


@pytest.mark.slow  # seconds: not the quick tier
def test_bracket_first_is_a_k_way_knockout_then_thompson() -> None:
    """With `bracket=True` the first screens are a knockout of K-way screens (64 items, best
    of 4: 16 + 4 + 1 screens), each round of the winners of the last; pairs make the
    classic 63-match bracket."""
    quality = np.random.default_rng(2).permutation(64).astype(float)
    for spec, rounds in (("best-of-4", (16, 4, 1)), ("pair", (32, 16, 8, 4, 2, 1))):
        scheduler = ChoiceScheduler(64, parse_screen(spec), budget=400, threshold=1.0, seed=3,
                                    bracket=True)  # fmt: skip
        history = run(scheduler, quality)
        _, bracket_screens = scheduler._bracket_due(history)
        assert bracket_screens == sum(rounds)
        start = 0
        for size in rounds[:-1]:  # every round is made of the winners of the one before
            winners = {c.best for c in history[start : start + size]}
            start += size
            nxt = history[start : start + max(1, size // scheduler.k)]
            assert winners == set().union(*(c.shown for c in nxt)) & winners
        assert history[bracket_screens - 1].best == int(np.argmax(quality))
        assert scheduler.leader(history)[0] == int(np.argmax(quality))


def test_narrow_compares_the_leader_and_its_challenger_as_a_pair() -> None:
    quality = np.arange(24, dtype=float)
    scheduler = ChoiceScheduler(24, parse_screen("best-worst-4"), budget=200, threshold=1.0,
                                seed=0, narrow=0.5)  # fmt: skip
    history: list[Choice] = []
    while (shown := scheduler.next_set(history)) is not None:
        history.append(noiseless(quality, shown, worst=len(shown) > 2))
    pairs = [c.shown for c in history if len(c.shown) == 2]
    # once two items hold half of P(best), only they are shown: in the end the best (23,
    # which a noiseless rater always picks) and its likeliest challenger
    assert len(pairs) > len(history) / 2
    assert all(len(c.shown) == 2 and 23 in c.shown for c in history[-10:])
    assert scheduler.leader(history)[0] == 23
