"""The local transformers backend on the real embedded model."""

from __future__ import annotations

import pytest

from openended.lm.base import GenerationRequest

pytestmark = pytest.mark.slow

PROMPTS = [
    "Formulas for y as a function of m, v:\ny = m*v\ny =",
    "def add(a, b):\n    return",
    "The capital of France is",
]


def test_greedy_batch_equals_one_at_a_time(embedded_lm) -> None:
    requests = [GenerationRequest(prompt=p, max_tokens=12, temperature=0.0) for p in PROMPTS]
    batched = embedded_lm.generate_sync(requests)
    for request, result in zip(requests, batched, strict=True):
        (alone,) = embedded_lm.generate_sync([request])
        assert alone.generations[0].text == result.generations[0].text


def test_seeds_make_samples_reproducible_whatever_the_batch(embedded_lm) -> None:
    request = GenerationRequest(prompt=PROMPTS[0], n=3, max_tokens=10, temperature=1.0, seed=42)
    other = GenerationRequest(prompt=PROMPTS[1], n=2, max_tokens=10, temperature=1.0, seed=7)
    first = embedded_lm.generate_sync([request])[0]
    second = embedded_lm.generate_sync([other, request])[1]
    assert [g.text for g in first.generations] == [g.text for g in second.generations]
    assert len(first.generations) == 3
    assert len({g.text for g in first.generations}) > 1  # the n samples differ


def test_stop_sequences_length_and_token_counts(embedded_lm) -> None:
    tokenizer = embedded_lm.tokenizer
    stop = GenerationRequest(prompt=PROMPTS[0], n=4, max_tokens=30, stop=("\n",), seed=1)
    short = GenerationRequest(prompt=PROMPTS[2], max_tokens=3, temperature=0.0)
    stopped, limited = embedded_lm.generate_sync([stop, short])
    for g in stopped.generations:
        assert "\n" not in g.text
        assert g.finish_reason in ("stop", "eos", "length")
        assert g.prompt_tokens == len(tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"])
        assert len(g.logprobs) == g.completion_tokens or g.finish_reason in ("stop", "eos")
    assert any(g.finish_reason == "stop" for g in stopped.generations)
    (g,) = limited.generations
    assert g.finish_reason == "length" and g.completion_tokens == 3
    assert all(lp <= 0 for lp in g.logprobs)


async def test_chat_messages_use_the_chat_template(embedded_lm) -> None:
    request = GenerationRequest(
        messages=({"role": "user", "content": "Say hello."},), max_tokens=8, temperature=0.0
    )
    assert "<|im_start|>user\nSay hello.<|im_end|>" in embedded_lm.render(request)
    (result,) = await embedded_lm.generate([request])
    assert result.generations[0].text.strip()


def test_min_p_keeps_tokens_within_a_factor_of_the_best() -> None:
    import math

    import torch

    from openended.lm.local import _filter_min_p

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    kept = _filter_min_p(probs.log(), torch.tensor([0.5, 0.5])).isfinite()
    assert kept.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert _filter_min_p(probs.log(), torch.tensor([0.0, 0.0])).isfinite().all()
    with pytest.raises(ValueError, match="min_p"):
        GenerationRequest(prompt="x", min_p=1.0)
    assert math.isclose(float(probs[0].sum()), 1.0)


def test_option_logprobs_rank_the_obvious_answer_first(embedded_lm) -> None:
    import asyncio

    prompt = "Question: what is 2 + 2?\n1. four\n2. seven\nAnswer with the number only.\nAnswer:"
    (scores,) = asyncio.run(embedded_lm.option_logprobs([prompt], ["1", "2"]))
    assert len(scores) == 2 and all(s < 0 for s in scores)
    assert scores[0] > scores[1]
