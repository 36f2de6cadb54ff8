"""The n-gram model: normalised distributions, the interpolated absolute-discounting
formula on a hand-worked corpus, reproducible sampling, and errors that name the line."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from openended.apps.experiments.ngram import EOS, NGramLM


def test_distributions_sum_to_one_everywhere() -> None:
    lm = NGramLM(["a", "b", "c"], order=3).fit(["a b", "a c c", "b"])
    for history in itertools.product(["a", "b", "c"], repeat=2):
        p = lm.distribution(list(history))
        assert p.sum() == pytest.approx(1.0)
        assert (p > 0).all()  # smoothing leaves nothing impossible
    assert lm.distribution([]).sum() == pytest.approx(1.0)


def test_bigram_probabilities_follow_the_formula() -> None:
    """Corpus "a b", "a a": after "a" come b, a and </s> once each, D = 0.5.
    Unigram counts: a 3, b 1, </s> 2 (total 6, 3 types); the floor is uniform over
    {a, b, </s>}."""
    lm = NGramLM(["a", "b"], order=2, discount=0.5).fit(["a b", "a a"])
    uniform = 1 / 3
    unigram = {
        "a": (3 - 0.5) / 6 + 0.5 * 3 / 6 * uniform,
        "b": (1 - 0.5) / 6 + 0.5 * 3 / 6 * uniform,
        EOS: (2 - 0.5) / 6 + 0.5 * 3 / 6 * uniform,
    }
    after_a = {
        "a": (1 - 0.5) / 3 + 0.5 * 3 / 3 * unigram["a"],  # "a" is followed by b, a, </s>
        "b": (1 - 0.5) / 3 + 0.5 * 3 / 3 * unigram["b"],
        EOS: (1 - 0.5) / 3 + 0.5 * 3 / 3 * unigram[EOS],
    }
    p = lm.distribution(["a"])
    for token, expected in after_a.items():
        assert p[lm.index[token]] == pytest.approx(expected)
    log_p, count = lm.logprob("a b")  # P(a | <s>) P(b | a) P(</s> | b)
    expected = (
        lm.distribution([])[lm.index["a"]]
        * after_a["b"]
        * lm.distribution(["a", "b"])[lm.index[EOS]]
    )
    assert count == 3
    assert log_p == pytest.approx(np.log(expected))


def test_sampling_is_reproducible_and_follows_the_model() -> None:
    lm = NGramLM(["x", "y"], order=2).fit(["x y"] * 30 + ["y x"] * 10)
    first = [lm.sample(np.random.default_rng(4)) for _ in range(3)]
    again = [lm.sample(np.random.default_rng(4)) for _ in range(3)]
    assert first == again
    rng = np.random.default_rng(0)
    starts = [lm.sample(rng)[:1] for _ in range(2000)]
    share_x = sum(s == ["x"] for s in starts) / len(starts)
    assert share_x == pytest.approx(lm.distribution([])[lm.index["x"]], abs=0.03)


def test_unknown_tokens_are_refused_with_the_line() -> None:
    lm = NGramLM(["a"], order=2)
    with pytest.raises(ValueError, match=r"line 2 .*'b' is not in the vocabulary"):
        lm.fit(["a", "a b"])
    with pytest.raises(ValueError, match="order"):
        NGramLM(["a"], order=0)
