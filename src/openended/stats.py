"""Effects with their uncertainty: bootstrap intervals over items.

A difference between two arms measured on the same items (puzzles, children, runs) is
judged by the bootstrap distribution of its mean over resampled items (Efron & Tibshirani,
"An Introduction to the Bootstrap", 1993, ch. 13; BCa intervals): an effect is claimed
only where the 95% interval excludes zero. A ratio of two arms' means (a tuned arm's rate
of improving children over its control's, pass@k over the base model's) is judged the same
way against 1 (`ratio_of_means`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean difference and its bootstrap interval."""

    mean: float
    low: float
    high: float
    null: float = 0.0
    """The value of no effect: 0 for a difference, 1 for a ratio."""

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def excludes_null(self) -> bool:
        """An effect may be claimed: the interval lies wholly on one side of no effect."""
        return self.low > self.null or self.high < self.null

    def __str__(self) -> str:
        if self.null == 1.0:  # a ratio
            return f"{self.mean:.3f}x [{self.low:.3f}, {self.high:.3f}]"
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
    diffs = np.asarray(arm, dtype=float) - np.asarray(reference, dtype=float)
    if diffs.size == 0:
        raise ValueError("no items to compare")
    mean = float(diffs.mean())
    if diffs.size < 2 or np.all(diffs == diffs[0]):
        return Interval(mean, mean, mean)  # no spread: the bootstrap is degenerate
    low, high = _interval((diffs,), np.mean, False, confidence, resamples, seed)
    return Interval(mean, low, high)


def ratio_of_means(
    arm: Sequence[float],
    reference: Sequence[float],
    *,
    paired: bool,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> Interval:
    """``mean(arm) / mean(reference)`` with its bootstrap interval (``null`` = 1).

    `paired`: the two arms were measured on the same items (puzzles), which are resampled
    together; otherwise (children of two searches) each arm's items are resampled on their
    own. BCa where it is defined, else the percentile method. A reference whose mean is 0
    has no ratio: ValueError."""
    a = np.asarray(arm, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("no items to compare")
    if paired and a.size != b.size:
        raise ValueError(f"paired arms need the same items: {a.size} vs {b.size}")
    if b.mean() == 0:
        raise ValueError("the reference arm's mean is 0: the ratio is undefined")
    ratio = float(a.mean() / b.mean())
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return Interval(ratio, ratio, ratio, null=1.0)

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        denominator = np.mean(y, axis=axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, np.mean(x, axis=axis) / denominator, np.inf)

    low, high = _interval((a, b), statistic, paired, confidence, resamples, seed)
    return Interval(ratio, low, high, null=1.0)


def _interval(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    paired: bool,
    confidence: float,
    resamples: int,
    seed: int,
) -> tuple[float, float]:
    """``scipy.stats.bootstrap``'s interval of `statistic` over `samples`: BCa, or the
    percentile method where BCa is undefined (a statistic with too little spread)."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(seed)
    low = high = float("nan")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # an undefined BCa is handled: percentile
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message=".*BCa confidence interval")
            result = bootstrap(
                samples,
                statistic,
                paired=paired,
                confidence_level=confidence,
                n_resamples=resamples,
                method=method,
                random_state=rng,
            )
        low, high = (float(v) for v in result.confidence_interval)
        if np.isfinite(low) and np.isfinite(high):
            break
    return low, high
