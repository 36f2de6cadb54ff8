"""A word n-gram language model with interpolated absolute discounting (Ney, Essen and
Kneser 1994, "On structuring probabilistic dependences in stochastic language
modelling"): the CPU-sized model of the self-training experiments. It trains in
milliseconds, gives exact log-probabilities, and shows the mechanisms that the collapse
literature describes (Shumailov et al. 2024, Nature 631:755): a token sequence that is not
sampled in one generation has only its smoothed probability in the next.

Each line is one sequence of whitespace tokens; the model predicts the end of the line
too. The vocabulary is fixed when the model is made, so that perplexities of models
trained on different data are comparable; tokens outside it are refused.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

BOS, EOS = "<s>", "</s>"


class NGramLM:
    """An order-`order` model over a fixed vocabulary.

    Args:
        vocabulary: every token a line may contain.
        order: n (a token is predicted from the n - 1 before it).
        discount: the absolute discount D in (0, 1).
        max_tokens: the longest line sampled (tokens, the end not counted).
    """

    def __init__(
        self,
        vocabulary: Iterable[str],
        *,
        order: int = 5,
        discount: float = 0.75,
        max_tokens: int = 32,
    ) -> None:
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if not 0 < discount < 1:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        words = sorted(set(vocabulary) - {BOS, EOS})
        self.tokens = [*words, EOS]
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.order = order
        self.discount = discount
        self.max_tokens = max_tokens
        self.counts: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def fit(self, lines: Iterable[str]) -> NGramLM:
        """Count every n-gram of every order in `lines` (adds to earlier counts)."""
        for number, line in enumerate(lines, 1):
            words = line.split()
            unknown = [w for w in words if w not in self.index or w == EOS]
            if unknown:
                raise ValueError(
                    f"line {number} ({line!r}): token {unknown[0]!r} is not in the vocabulary"
                )
            padded = [BOS] * (self.order - 1) + words + [EOS]
            for position in range(self.order - 1, len(padded)):
                word = padded[position]
                for n in range(self.order):
                    self.counts[tuple(padded[position - n : position])][word] += 1
        self._cache.clear()
        return self

    def distribution(self, history: Sequence[str]) -> np.ndarray:
        """P(next token | the last n - 1 tokens of `history`), over `self.tokens`."""
        context = tuple([BOS] * (self.order - 1) + list(history))[len(history) :]
        return self._distribution(context)

    def _distribution(self, context: tuple[str, ...]) -> np.ndarray:
        cached = self._cache.get(context)
        if cached is not None:
            return cached
        if context:
            lower = self._distribution(context[1:])
        else:
            lower = np.full(len(self.tokens), 1.0 / len(self.tokens))
        seen = self.counts.get(context)
        if not seen:
            result = lower
        else:
            total = sum(seen.values())
            counts = np.zeros(len(self.tokens))
            for word, count in seen.items():
                counts[self.index[word]] = count
            kept = np.maximum(counts - self.discount, 0.0) / total
            result = kept + (self.discount * len(seen) / total) * lower
        self._cache[context] = result
        return result

    def logprob(self, line: str) -> tuple[float, int]:
        """Natural-log probability of a whole line (its end included) and its token count."""
        words = line.split()
        total = 0.0
        for position, word in enumerate([*words, EOS]):
            index = self.index.get(word)
            if index is None or (word == EOS and position < len(words)):
                raise ValueError(f"{line!r}: token {word!r} is not in the vocabulary")
            total += float(np.log(self.distribution(words[:position])[index]))
        return total, len(words) + 1

    def perplexity(self, lines: Sequence[str]) -> float:
        """exp of the mean negative log-probability per token (line ends included)."""
        log_total, tokens = 0.0, 0
        for line in lines:
            lp, count = self.logprob(line)
            log_total += lp
            tokens += count
        return float(np.exp(-log_total / tokens))

    def sample(self, rng: np.random.Generator, prefix: Sequence[str] = ()) -> list[str]:
        """Tokens after `prefix`, up to the end of the line or `max_tokens` in all."""
        words = list(prefix)
        out: list[str] = []
        while len(words) < self.max_tokens:
            p = self.distribution(words)
            token = self.tokens[int(rng.choice(len(p), p=p))]
            if token == EOS:
                break
            words.append(token)
            out.append(token)
        return out
