"""Exact speculative sampling (Leviathan et al. 2022, arXiv 2211.17192; Chen et al. 2023,
arXiv 2302.01318) and the drafters that propose tokens for it.

A drafter proposes tokens x_1..x_k with draft distributions q_1..q_k; the target model
scores all of them in one forward pass, giving p_1..p_{k+1}. Draft token x_j is accepted
with probability min(1, p_j(x_j) / q_j(x_j)); at the first rejection the token is drawn
from norm(max(0, p_j - q_j)) and the rest of the draft is dropped; when every draft token
is accepted, a bonus token is drawn from p_{k+1}. Each emitted token then has exactly the
target's distribution p (for any q), which `residual` and the tests check:
q(x) min(1, p(x)/q(x)) + (1 - sum_y min(p(y), q(y))) residual(x) = p(x).

Greedy decoding is the special case where p is one-hot at the target's argmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

SPECULATIVE_MODES = ("auto", "prompt-lookup", "draft-model", "off")


def speculates(mode: str, request_hint: bool) -> bool:
    """Does a request's row draft? Always in "prompt-lookup" mode; in "auto" mode when the
    request asks for it (`GenerationRequest.speculate`). Never a function of the batch:
    a sampled row's tokens depend on whether it speculates (the same distribution, other
    draws), and a request's output must depend on its seed only."""
    return mode in ("prompt-lookup", "draft-model") or (mode == "auto" and request_hint)


@dataclass
class DraftAsk:
    """What a drafter is asked for one row of a decoding batch (`row`): up to `k` tokens
    after `tokens`, sampled as the row is (a greedy row has temperature 0)."""

    row: int
    tokens: list[int]
    k: int
    temperature: float
    top_p: float
    min_p: float
    top_k: int
    generator: torch.Generator


@dataclass
class SpeculationStats:
    """Counts over a model's decoding: draft tokens proposed and accepted, target forward
    passes (prefills included) and row-steps (one row verified after one forward)."""

    proposed: int = 0
    accepted: int = 0
    forwards: int = 0
    steps: int = 0

    def record(self, proposed: int, accepted: int) -> None:
        self.proposed += proposed
        self.accepted += accepted
        self.steps += 1

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None

    def reset(self) -> None:
        self.proposed = self.accepted = self.forwards = self.steps = 0


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) over the last axis; where p <= q everywhere (p == q), any
    distribution is correct because a rejection never happens, and p is returned."""
    diff = (p - q).clamp(min=0)
    total = diff.sum(-1, keepdim=True)
    return torch.where(total > 0, diff / total.clamp(min=1e-30), p)


def acceptance_probability(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sum_x min(p(x), q(x)): the chance that one draft token is accepted."""
    return torch.minimum(p, q).sum(-1)


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one row's draft."""

    accepted: int  # draft tokens accepted
    token: int  # the token after them: a correction (rejected) or a bonus (all accepted)


def verify(
    p: torch.Tensor,
    draft: Sequence[int],
    q: torch.Tensor | None,
    generator: torch.Generator | None,
) -> Verdict:
    """Accept or reject one row's draft.

    Args:
        p: target probabilities, shape (k + 1, vocab): p[j] is the distribution of the
            token after the first j draft tokens.
        draft: the k draft tokens.
        q: draft probabilities, shape (k, vocab); None for a point-mass drafter (prompt
            lookup), where q[j] is one-hot at draft[j].
        generator: the row's random generator; None for greedy rows, where p is one-hot.
    """
    for j, token in enumerate(draft):
        p_token = float(p[j, token])
        q_token = 1.0 if q is None else float(q[j, token])
        # q(token) = 0: the drafter could not have proposed it; treat as a rejection
        ratio = 0.0 if q_token <= 0 else min(1.0, p_token / q_token)
        if ratio >= 1.0 or (ratio > 0 and _uniform(generator) < ratio):
            continue
        q_row = torch.zeros_like(p[j]) if q is None else q[j]
        if q is None:
            q_row[token] = 1.0
        return Verdict(j, _draw(residual(p[j], q_row), generator))
    return Verdict(len(draft), _draw(p[len(draft)], generator))


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    if generator is None:
        return int(torch.argmax(probs))
    return int(torch.multinomial(probs, 1, generator=generator))


class PromptLookup:
    """Draft by copying: find the most recent earlier occurrence of the sequence's last
    n tokens (n = `max_ngram` down to `min_ngram`) and propose the tokens that followed it
    (Saxena 2023, "prompt lookup decoding"). Its q is a point mass, so verification
    accepts a draft token with probability p(token)."""

    def __init__(self, max_ngram: int = 4, min_ngram: int = 2) -> None:
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def session(self) -> PromptLookup:
        """The drafter of one decoding batch: this one, which keeps no state."""
        return self

    def propose_batch(self, asks: Sequence[DraftAsk]) -> list[tuple[list[int], None]]:
        """Drafts for several rows; q is a point mass (None)."""
        return [(self.propose(ask.tokens, ask.k), None) for ask in asks]

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        if k <= 0 or len(tokens) < self.min_ngram + 1:
            return []
        array = np.asarray(tokens)
        for n in range(min(self.max_ngram, len(tokens) - 1), self.min_ngram - 1, -1):
            suffix = array[-n:]
            windows = np.lib.stride_tricks.sliding_window_view(array[:-1], n)
            hits = np.flatnonzero((windows == suffix).all(axis=1))
            if len(hits):
                start = int(hits[-1]) + n
                return [int(t) for t in array[start : start + k]]
        return []


class AdaptiveLength:
    """Per-row draft length: longer after a fully accepted draft, shorter after a
    rejection (the heuristic of transformers' assisted generation). It depends on the
    row's own history only, never on the batch (a row's draws, hence its output for a
    seed, depend on its draft lengths); `high` keeps batched steps narrow on CPUs."""

    def __init__(self, start: int = 4, low: int = 1, high: int = 6) -> None:
        self.start, self.low, self.high = start, low, high

    def update(self, current: int, proposed: int, accepted: int) -> int:
        if proposed and accepted == proposed:
            return min(self.high, current + 2)
        if proposed:
            return max(self.low, current - 1)
        return current
