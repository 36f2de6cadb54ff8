"""Bootstrap intervals cover a known effect, and a null effect's interval covers no effect
(simulated arms, as issue 36 asks)."""

import numpy as np
import pytest

from openended.stats import paired_difference, ratio_of_means


def test_a_known_difference_is_covered_and_a_null_one_covers_zero() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0.0, 1.0, 200)
    shifted = base + 0.5 + rng.normal(0.0, 0.5, 200)
    effect = paired_difference(shifted, base, resamples=2000)
    assert effect.low < 0.5 < effect.high and effect.excludes_null
    null = paired_difference(base + rng.normal(0.0, 0.5, 200), base, resamples=2000)
    assert null.low < 0.0 < null.high and not null.excludes_null


def test_a_ratio_of_rates_covers_the_true_ratio_and_a_null_ratio_covers_one() -> None:
    """Over 40 simulated pairs of searches (improving children, rate 0.30 vs 0.15, and 0.15
    vs 0.15), the 95% intervals cover the true ratio about 95% of the time."""
    rng = np.random.default_rng(2)
    covers_effect = covers_null = above_one = 0
    for trial in range(40):
        tuned = rng.random(600) < 0.30
        control = rng.random(600) < 0.15
        same = rng.random(600) < 0.15
        effect = ratio_of_means(tuned, control, paired=False, resamples=1000, seed=trial)
        null = ratio_of_means(same, control, paired=False, resamples=1000, seed=trial)
        covers_effect += effect.low < 2.0 < effect.high
        above_one += effect.excludes_null
        covers_null += null.low < 1.0 < null.high
    assert covers_effect >= 34 and covers_null >= 34  # 95% nominal; 34/40 = 85%
    assert above_one == 40  # a twofold rate at 600 children is always detected
    assert "x [" in str(effect)


def test_a_paired_ratio_resamples_the_items_together() -> None:
    """Pass@10 per puzzle of a tuned and a base model on the same puzzles: the puzzles'
    difficulty is shared, so the paired interval is narrower than the unpaired one."""
    rng = np.random.default_rng(3)
    difficulty = rng.random(300)
    base = (difficulty > 0.7).astype(float)
    tuned = np.maximum(base, (difficulty > 0.6) & (rng.random(300) < 0.8)).astype(float)
    paired = ratio_of_means(tuned, base, paired=True, resamples=2000)
    unpaired = ratio_of_means(tuned, base, paired=False, resamples=2000)
    assert paired.mean == pytest.approx(tuned.mean() / base.mean())
    assert paired.high - paired.low < unpaired.high - unpaired.low
    assert paired.excludes_null


def test_ratios_without_a_reference_or_items_are_refused() -> None:
    with pytest.raises(ValueError, match="mean is 0"):
        ratio_of_means([1.0, 0.0], [0.0, 0.0], paired=True)
    with pytest.raises(ValueError, match="same items"):
        ratio_of_means([1.0, 0.0], [1.0], paired=True)
    with pytest.raises(ValueError, match="no items"):
        ratio_of_means([], [1.0], paired=False)
