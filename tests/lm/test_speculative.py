"""Exact speculative sampling: the acceptance identity, the output distribution on toy
Markov chains (with negative controls that must fail), the acceptance rate, and greedy
equality with plain decoding on the embedded model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from openended.lm.base import GenerationRequest
from openended.lm.speculative import (
    PromptLookup,
    Verdict,
    acceptance_probability,
    residual,
    verify,
)


def _identity(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """q min(1, p/q) + (1 - sum min(p, q)) residual(p, q), which must equal p."""
    ratio = torch.where(q > 0, torch.clamp(p / q.clamp(min=1e-30), max=1.0), torch.zeros_like(p))
    return q * ratio + (1 - acceptance_probability(p, q)) * residual(p, q)


def _dist(values: list[float]) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float64)
    return t / t.sum()


@pytest.mark.parametrize(
    ("p", "q"),
    [
        ([0.5, 0.3, 0.2], [0.2, 0.3, 0.5]),
        ([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]),  # p = q: never rejects
        ([0.5, 0.3, 0.2], [0.0, 1.0, 0.0]),  # one-hot q (prompt lookup)
        ([0.6, 0.4, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]),  # q outside p's support
        ([0.0, 0.7, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25]),  # tokens masked in p (top-p)
        ([1.0, 0.0, 0.0], [0.1, 0.8, 0.1]),  # greedy: p one-hot
    ],
)
def test_acceptance_identity_reproduces_p(p: list[float], q: list[float]) -> None:
    target, draft = _dist(p), _dist(q)
    assert torch.allclose(_identity(target, draft), target, atol=1e-12)
    assert float(residual(target, draft).sum()) == pytest.approx(1.0)
    assert bool((residual(target, draft)[target == 0] == 0).all())  # never a masked token


def test_identity_on_random_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        p = torch.rand(7, generator=g, dtype=torch.float64) ** 3
        q = torch.rand(7, generator=g, dtype=torch.float64) ** 3
        p[torch.rand(7, generator=g) < 0.3] = 0
        p[0] += 1e-3
        p, q = p / p.sum(), q / q.sum()
        assert torch.allclose(_identity(p, q), p, atol=1e-12)


# --- toy Markov chains -----------------------------------------------------------------

VOCAB, LENGTH, DRAFT = 3, 5, 3  # sequences longer than the draft
TARGET = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3]], dtype=torch.float64)
DRAFTER = torch.tensor([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)


def always_accept(p, draft, q, generator) -> Verdict:
    """Negative control: the draft's distribution leaks into the output."""
    return Verdict(len(draft), int(torch.multinomial(p[len(draft)], 1, generator=generator)))


def resample_from_p(p, draft, q, generator) -> Verdict:
    """Negative control: on rejection, sample from p instead of norm(max(0, p - q))."""
    for j, token in enumerate(draft):
        if float(torch.rand((), generator=generator)) < min(1.0, float(p[j, token] / q[j, token])):
            continue
        return Verdict(j, int(torch.multinomial(p[j], 1, generator=generator)))
    return always_accept(p, draft, q, generator)


def sample_sequence(generator: torch.Generator, verifier=verify) -> tuple[tuple[int, ...], list]:
    """One sequence of LENGTH tokens after token 0, drafted DRAFT at a time."""
    sequence = [0]
    steps = []
    while len(sequence) <= LENGTH:
        draft, q_rows, last = [], [], sequence[-1]
        for _ in range(DRAFT):
            q_row = DRAFTER[last]
            last = int(torch.multinomial(q_row, 1, generator=generator))
            draft.append(last)
            q_rows.append(q_row)
        context = [sequence[-1], *draft]
        p = torch.stack([TARGET[t] for t in context])
        verdict = verifier(p, draft, torch.stack(q_rows), generator)
        steps.append((p[0], q_rows[0], verdict.accepted > 0))
        sequence += [*draft[: verdict.accepted], verdict.token]
    return tuple(sequence[1 : LENGTH + 1]), steps


def chi_square_p_value(verifier, samples: int = 6000) -> float:
    generator = torch.Generator().manual_seed(1)
    cells = list(itertools.product(range(VOCAB), repeat=4))  # the first 4 tokens: 81 cells
    index = {c: k for k, c in enumerate(cells)}
    counts = np.zeros(len(cells))
    for _ in range(samples):
        sequence, _ = sample_sequence(generator, verifier)
        counts[index[sequence[:4]]] += 1
    expected = []
    for cell in cells:
        probability, last = 1.0, 0
        for token in cell:
            probability *= float(TARGET[last, token])
            last = token
        expected.append(probability * samples)
    return float(chisquare(counts, expected).pvalue)


@pytest.mark.slow  # thousands of samples
def test_sequences_follow_the_target_distribution() -> None:
    assert chi_square_p_value(verify) > 0.001


@pytest.mark.parametrize("wrong", [always_accept, resample_from_p])
def test_negative_controls_fail_the_same_test(wrong) -> None:
    assert chi_square_p_value(wrong) < 1e-6


def test_measured_acceptance_rate_matches_sum_of_min_p_q() -> None:
    generator = torch.Generator().manual_seed(2)
    steps = [s for _ in range(3000) for s in sample_sequence(generator)[1]]
    measured = np.mean([accepted for _, _, accepted in steps])
    expected = np.mean([float(acceptance_probability(p, q)) for p, q, _ in steps])
    assert measured == pytest.approx(
        expected, abs=4 * np.sqrt(expected * (1 - expected) / len(steps))
    )


def test_prompt_lookup_copies_the_continuation_of_the_latest_match() -> None:
    lookup = PromptLookup(max_ngram=3, min_ngram=1)
    tokens = [5, 6, 7, 8, 9, 1, 5, 6, 7, 2, 3, 5, 6, 7]
    assert lookup.propose(tokens, 4) == [2, 3, 5, 6]  # the later "5 6 7" is followed by 2 3
    assert lookup.propose([1, 2, 3], 4) == []  # nothing repeats
    assert lookup.propose(tokens, 0) == []


# --- the embedded model ------------------------------------------------------------------

PARENT = '''def priority(item: float, bins: list[float]) -> list[float]:
    """Score each bin; the item goes in the highest-scoring bin."""
    scores = []
    for capacity in bins:
        scores.append(-(capacity - item) if capacity >= item else -1e9)
    return scores
'''


@pytest.fixture(scope="module")
def speculative_lm(embedded_lm):
    return embedded_lm.with_speculation("prompt-lookup")  # the same weights


@pytest.mark.slow
def test_greedy_speculative_output_equals_plain_greedy(embedded_lm, speculative_lm) -> None:
    requests = [
        GenerationRequest(
            prompt=f"# Copy this code.\n{PARENT}\n# Copy:\n", n=2, max_tokens=60, temperature=0.0
        ),
        GenerationRequest(
            prompt=f"{PARENT}\n# The same, with comments:\n", max_tokens=50, temperature=0.0
        ),
        GenerationRequest(
            prompt=f"{PARENT}\n# Again:\n", max_tokens=40, temperature=0.0, stop=(":",)
        ),
    ]
    plain = embedded_lm.generate_sync(requests)
    speculative_lm.stats.reset()
    fast = speculative_lm.generate_sync(requests)
    for a, b in zip(plain, fast, strict=True):
        assert [g.text for g in a.generations] == [g.text for g in b.generations]
        assert [g.finish_reason for g in a.generations] == [g.finish_reason for g in b.generations]
        assert [g.completion_tokens for g in a.generations] == [
            g.completion_tokens for g in b.generations
        ]
    assert fast[2].generations[0].finish_reason == "stop"  # the stop string was met
    stats = speculative_lm.stats
    assert stats.accepted > 20  # drafts were accepted, so steps emitted several tokens
    assert stats.steps < sum(g.completion_tokens for r in fast for g in r.generations)


@pytest.mark.slow
def test_sampled_speculative_output_respects_limits_and_seeds(speculative_lm) -> None:
    """A seeded request gives the same output alone and among 11 other rows."""
    request = GenerationRequest(
        prompt=f"{PARENT}\n# Copy:\n", n=3, max_tokens=40, temperature=0.7, seed=5
    )
    others = [
        GenerationRequest(prompt=f"{PARENT}\n# Again {k}:\n", n=3, max_tokens=24, seed=k)
        for k in range(3)
    ]
    first = speculative_lm.generate_sync([request])[0]
    again = speculative_lm.generate_sync([*others, request])[-1]
    assert [g.text for g in first.generations] == [g.text for g in again.generations]
    for generation in first.generations:
        assert generation.completion_tokens <= 40
        assert len(generation.logprobs) == generation.completion_tokens - (
            generation.finish_reason == "eos"
        )
        assert all(lp <= 0 for lp in generation.logprobs)


@pytest.mark.slow
def test_auto_mode_speculates_only_requests_that_ask(embedded_lm) -> None:
    auto = embedded_lm.with_speculation("auto")
    prompt = f"{PARENT}\n# Copy:\n"
    auto.generate_sync([GenerationRequest(prompt=prompt, max_tokens=24, temperature=0.0)])
    assert auto.stats.proposed == 0
    flagged = GenerationRequest(prompt=prompt, max_tokens=24, temperature=0.0, speculate=True)
    auto.generate_sync([flagged])
    assert auto.stats.proposed > 0
    off = embedded_lm.with_speculation("off")
    off.generate_sync([flagged])
    assert off.stats.proposed == 0
    with pytest.raises(ValueError, match="speculative must be one of"):
        embedded_lm.with_speculation("draft")


def test_rewrite_and_diff_requests_ask_for_speculation() -> None:
    from openended.operators.mutation import InstructionMutation
    from openended.operators.program import DiffMutation, FullRewrite

    assert DiffMutation.copies_parent and FullRewrite.copies_parent
    assert not InstructionMutation.copies_parent


@pytest.mark.slow
def test_a_draft_model_keeps_greedy_output_and_the_sampled_distribution(embedded_lm) -> None:
    """The embedded model drafting for itself: q = p, so greedy output is unchanged and
    almost every draft token is accepted (sampled ones too: min(1, p/q) = 1)."""
    drafted = embedded_lm.with_speculation("draft-model", draft_model=embedded_lm)
    greedy = GenerationRequest(prompt=f"{PARENT}\n# Again:\n", n=2, max_tokens=30, temperature=0.0)
    sampled = GenerationRequest(
        prompt=f"{PARENT}\n# Copy:\n", max_tokens=30, temperature=0.8, seed=3
    )
    plain = embedded_lm.with_speculation("off").generate_sync([greedy])[0]
    fast, draws = drafted.generate_sync([greedy, sampled])
    assert [g.text for g in plain.generations] == [g.text for g in fast.generations]
    assert drafted.stats.acceptance_rate > 0.95
    assert draws.generations[0].completion_tokens > 0
    assert drafted.stats.steps < 0.6 * sum(
        g.completion_tokens for r in (fast, draws) for g in r.generations
    )


@pytest.mark.slow
def test_a_different_draft_model_keeps_greedy_output(embedded_lm) -> None:
    """An early-exit draft (the first 12 of 30 layers) disagrees with the target often,
    so most steps roll the draft's KV cache back; greedy output must not change."""
    from openended.lm.local import early_exit

    drafted = embedded_lm.with_speculation("draft-model", draft_model=early_exit(embedded_lm, 12))
    requests = [
        GenerationRequest(prompt=f"{PARENT}\n# Again:\n", n=2, max_tokens=40, temperature=0.0),
        GenerationRequest(prompt="def fib(n):\n", max_tokens=25, temperature=0.0),
    ]
    plain = embedded_lm.with_speculation("off").generate_sync(requests)
    fast = drafted.generate_sync(requests)
    assert [g.text for r in plain for g in r.generations] == [
        g.text for r in fast for g in r.generations
    ]
    assert 0 < drafted.stats.accepted < drafted.stats.proposed


def test_the_draft_cache_gives_the_drafts_of_a_fresh_prefill(embedded_lm) -> None:
    """A draft session keeps its KV cache between steps and masks rejected drafts: the
    drafts and q it gives for a context must be those of a session that prefilled the
    same context afresh."""
    from openended.lm.local import DraftModel, early_exit
    from openended.lm.speculative import DraftAsk

    drafter = DraftModel(early_exit(embedded_lm, 8), embedded_lm)
    prompts = [embedded_lm.tokenizer(t)["input_ids"] for t in (PARENT, "def fib(n):\n  ")]

    def ask(row: int, tokens: list[int], k: int) -> DraftAsk:
        generator = torch.Generator().manual_seed(row)
        return DraftAsk(row, tokens, k, 0.9, 0.95, 0.0, 0, generator)

    session = drafter.session()
    first = session.propose_batch([ask(0, prompts[0], 4), ask(1, prompts[1], 3)])
    # row 0 keeps 2 draft tokens and a token of its own; row 1 rejects its first draft
    contexts = [
        prompts[0] + first[0][0][:2] + [13],
        prompts[1] + [first[1][0][0] + 1],
    ]
    cached = session.propose_batch([ask(0, contexts[0], 3), ask(1, contexts[1], 2)])
    fresh = drafter.session().propose_batch([ask(0, contexts[0], 3), ask(1, contexts[1], 2)])
    for (tokens, q), (fresh_tokens, fresh_q) in zip(cached, fresh, strict=True):
        assert tokens == fresh_tokens
        assert torch.allclose(q, fresh_q, atol=1e-5)
    # a finished row leaves the cache; the other goes on
    later = session.propose_batch([ask(1, contexts[1] + cached[1][0], 2)])
    again = drafter.session().propose_batch([ask(1, contexts[1] + cached[1][0], 2)])
    assert later[0][0] == again[0][0]
    assert torch.allclose(later[0][1], again[0][1], atol=1e-5)
