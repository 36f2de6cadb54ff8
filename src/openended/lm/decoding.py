"""What every local backend shares: prompt rendering, per-sample seeds, and the state of a
batch being decoded (tokens, log-probabilities, stop strings, token limits)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from openended.lm.base import Generation, GenerationRequest


def render_prompt(tokenizer: Any, request: GenerationRequest) -> str:
    """The exact text a model is conditioned on: the raw prompt, or the chat messages
    rendered with the model's chat template."""
    if request.messages is not None:
        return str(
            tokenizer.apply_chat_template(
                [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True
            )
        )
    assert request.prompt is not None
    return request.prompt


def resolve_threads(threads: int, *, share: float = 0.5) -> int:
    """Decoding threads: `threads`, or with 0 that `share` of the cores (at least one). The
    transformers backend takes half: with two torch threads on two cores that evaluations
    also used, decoding fell from ~50 to 3 tokens/s here. CTranslate2 keeps its speed
    beside evaluations and takes them all."""
    if threads > 0:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int((cores or 2) * share))


def option_token_ids(tokenizer: Any, options: Sequence[str]) -> list[list[int]]:
    """For each option, the first tokens that start it (with or without a leading space)
    and start no other option: the tokens whose next-token probability says "this
    option". A first token that is only a space, or shared with another option, is left
    out; an option left with none is an error."""
    firsts = [
        {
            tokenizer(variant, add_special_tokens=False)["input_ids"][0]
            for variant in (option, " " + option)
        }
        for option in options
    ]
    counts: dict[int, int] = {}
    for tokens in firsts:
        for token in tokens:
            counts[token] = counts.get(token, 0) + 1
    ids = []
    for option, tokens in zip(options, firsts, strict=True):
        kept = [t for t in tokens if counts[t] == 1 and tokenizer.decode([t]).strip()]
        if not kept:
            raise ValueError(f"option {option!r} has no first token of its own")
        ids.append(sorted(kept))
    return ids


def sample_seed(seed: int, sample_index: int) -> int:
    """A 63-bit seed for sample `sample_index` of a request seeded with `seed`."""
    state = np.random.SeedSequence([seed & (2**63 - 1), sample_index]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


class DecodeState:
    """The tokens, log-probabilities and finish reasons of a batch being decoded."""

    def __init__(self, rows: Sequence[Any], tokenizer: object, eos_ids: frozenset[int]) -> None:
        self.rows = rows
        self.tokenizer = tokenizer
        self.eos = eos_ids
        self.generated: list[list[int]] = [[] for _ in rows]
        self.logprobs: list[list[float]] = [[] for _ in rows]
        self.finish: list[str | None] = [None] * len(rows)
        self.texts: list[str] = [""] * len(rows)

    def _text(self, i: int) -> str:
        return self.tokenizer.decode(self.generated[i], skip_special_tokens=True)  # type: ignore[attr-defined]

    def take(self, i: int, token: int, logprob: float) -> bool:
        """Append a token to row i; False when the row has finished (eos, a stop string,
        or its token limit)."""
        if token in self.eos:
            self.finish[i], self.texts[i] = "eos", self._text(i)
            return False
        self.generated[i].append(token)
        self.logprobs[i].append(logprob)
        stops = self.rows[i].request.stop
        if stops:
            text = self._text(i)
            cut = min((p for p in (text.find(s) for s in stops) if p >= 0), default=-1)
            if cut >= 0:
                self.finish[i], self.texts[i] = "stop", text[:cut]
                return False
        if len(self.generated[i]) >= self.rows[i].request.max_tokens:
            self.finish[i], self.texts[i] = "length", self._text(i)
            return False
        return True

    def room(self, i: int, length: int) -> int:
        """Draft tokens worth proposing: the next token is always emitted, so at most
        the tokens left after it."""
        return max(0, min(length, self.rows[i].request.max_tokens - len(self.generated[i]) - 1))

    def generation(self, i: int) -> Generation:
        return Generation(
            text=self.texts[i],
            finish_reason=self.finish[i] or "length",  # type: ignore[arg-type]
            prompt_tokens=len(self.rows[i].prompt_ids),
            completion_tokens=len(self.generated[i]) + (1 if self.finish[i] == "eos" else 0),
            logprobs=tuple(self.logprobs[i]),
        )
