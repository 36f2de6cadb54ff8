"""What the self-training experiments measure per generation: diversity (distinct-n, Li
et al. 2016; embedding dispersion), the survival of the real data's rare n-grams, and
pass@k (the unbiased estimator of Chen et al. 2021, arXiv 2107.03374)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from math import comb

import numpy as np


def ngrams(line: str, n: int) -> list[tuple[str, ...]]:
    words = line.split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def rare_ngrams(lines: Sequence[str], n: int = 3, max_count: int = 1) -> set[tuple[str, ...]]:
    """The n-grams seen at most `max_count` times in `lines` (the tail)."""
    counts = Counter(g for line in lines for g in ngrams(line, n))
    return {g for g, c in counts.items() if c <= max_count}


def tail_survival(rare: set[tuple[str, ...]], lines: Sequence[str], n: int = 3) -> float:
    """The share of the rare n-grams that occur somewhere in `lines`."""
    if not rare:
        return float("nan")
    seen = {g for line in lines for g in ngrams(line, n)}
    return len(rare & seen) / len(rare)


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """P(at least one of k samples drawn from `samples` is correct), unbiased."""
    if k > samples:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {samples}")
    if samples - correct < k:
        return 1.0
    return 1.0 - comb(samples - correct, k) / comb(samples, k)


def mean_pass_at_k(correct_counts: Sequence[int], samples: int, k: int) -> float:
    return float(np.mean([pass_at_k(samples, c, k) for c in correct_counts]))
