from __future__ import annotations

import math

import pytest

from openended.apps.experiments.metrics import pass_at_k, rare_ngrams, tail_survival
from openended.apps.experiments.summary import mean_ci


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # any 5 of 10 include a correct one
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))
    with pytest.raises(ValueError, match="at least 5 samples"):
        pass_at_k(3, 1, 5)


def test_tail_survival_counts_rare_ngrams_that_reappear() -> None:
    real = ["a b c", "a b c", "x y z", "p q r"]
    rare = rare_ngrams(real, n=3, max_count=1)
    assert rare == {("x", "y", "z"), ("p", "q", "r")}
    assert tail_survival(rare, ["x y z w", "a b c"]) == 0.5
    assert tail_survival(rare, ["a b c"]) == 0.0


def test_confidence_interval_is_students_t() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))
    assert mean_ci([5.0]) == (5.0, 0.0)
