"""Effects with their uncertainty: paired bootstrap intervals over items.

A difference between two arms measured on the same items (puzzles, children, runs) is
judged by the bootstrap distribution of its mean over resampled items (Efron & Tibshirani,
"An Introduction to the Bootstrap", 1993, ch. 13; BCa intervals): an effect is claimed
only where the 95% interval excludes zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean difference and its bootstrap interval."""

    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired_difference(
    arm: Sequence[float],
    reference: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> Interval:
    """The mean of ``arm[i] - reference[i]`` over items with its bootstrap interval
    (``scipy.stats.bootstrap``, BCa; the percentile method where BCa is undefined)."""
    from scipy.stats import bootstrap

    diffs = np.asarray(arm, dtype=float) - np.asarray(reference, dtype=float)
    if diffs.size == 0:
        raise ValueError("no items to compare")
    mean = float(diffs.mean())
    if diffs.size < 2 or np.all(diffs == diffs[0]):
        return Interval(mean, mean, mean)  # no spread: the bootstrap is degenerate
    rng = np.random.default_rng(seed)
    result = bootstrap(
        (diffs,), np.mean, confidence_level=confidence, n_resamples=resamples, random_state=rng
    )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        result = bootstrap(
            (diffs,),
            np.mean,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            random_state=rng,
        )
        low, high = result.confidence_interval
    return Interval(mean, float(low), float(high))
