"""AI feedback for text: place a text on each axis and score its quality (QDAIF, Bradley
et al. 2023, arXiv 2310.13032).

Each question lists numbered options. When the model gives log-probabilities over the next
token (`option_logprobs`, the local backend), the judge reads the distribution over the
option numbers directly; otherwise it samples answers and parses the first option number.
`repeats` asks again (with the categorical options shuffled, or by sampling) and averages,
for noisy judges. Every judgement records which method was used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openended.domains.text.axes import TextAxis, TextTask
from openended.lm.base import (
    ChatLogprobModel,
    GenerationRequest,
    LanguageModel,
    LogprobModel,
)

QUALITY_LEVELS = ("not at all", "poorly", "partly", "mostly", "fully")


@dataclass(frozen=True)
class Judgement:
    """Where a text sits on each axis, and its quality in [0, 1]."""

    bins: tuple[int, ...]
    distributions: tuple[tuple[float, ...], ...]
    """Per axis: the probability of each bin (averaged over repeats)."""
    quality: float
    method: str
    """``logprobs`` or ``parsed``."""
    unparsed: int = 0
    """Answers that named no option (parsed method only)."""


@dataclass(frozen=True)
class _Question:
    text_index: int
    axis_index: int  # -1: quality
    options: tuple[str, ...]
    order: tuple[int, ...]  # order[i] = the bin shown as option i + 1
    prompt: Any
    repeat: int = 0


class Judge:
    """Asks the model about each text, one question per axis plus one for quality.

    Args:
        lm: the judge model.
        task: the task, quality criterion and axes.
        repeats: questions per axis and text (averaged).
        seed: for option shuffles and sampled answers.
        method: ``auto`` (log-probabilities when the backend gives them), ``logprobs``
            or ``parsed``.
        calibrate: with log-probabilities, divide by the distribution the judge gives for
            a content-free text (contextual calibration), against position bias.
    """

    def __init__(
        self,
        lm: LanguageModel,
        task: TextTask,
        *,
        repeats: int = 1,
        seed: int = 0,
        method: str = "auto",
        calibrate: bool = True,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"judge repeats must be >= 1, got {repeats}")
        self.lm = lm
        self.task = task
        self.repeats = repeats
        self.seed = seed
        self.calibrate = calibrate
        local = isinstance(lm, LogprobModel)
        remote = isinstance(lm, ChatLogprobModel)
        if method == "logprobs" and not (local or remote):
            raise ValueError(f"{lm.model_id} gives no option log-probabilities; use 'parsed'")
        self.method = "logprobs" if method != "parsed" and (local or remote) else "parsed"
        self._remote = remote and not local

    # -- questions --------------------------------------------------------------------------

    def _messages(self, text: str, axis: TextAxis | None, options: Sequence[str]) -> list[dict]:
        numbered = "\n".join(f"{i + 1}. {o}" for i, o in enumerate(options))
        if axis is None:
            question = (
                f"The text should be one of: {self.task.task}.\n"
                f"How well does it meet this standard: {self.task.quality}?"
            )
        else:
            question = f"{axis.description}. Which option fits the text best?"
        content = (
            f"Text:\n{text.strip()}\n\n{question}\n{numbered}\n"
            f"Reply with the number of one option only."
        )
        return [{"role": "user", "content": content}]

    def _questions(self, texts: Sequence[str]) -> list[_Question]:
        questions = []
        for t, text in enumerate(texts):
            rng = np.random.default_rng([self.seed, _stable_hash(text)])
            axes: list[tuple[int, TextAxis | None]] = [(i, a) for i, a in enumerate(self.task.axes)]
            axes.append((-1, None))
            for a_index, axis in axes:
                bins = list(QUALITY_LEVELS) if axis is None else axis.bins
                ordinal = axis is None or axis.ordinal
                seen: set[tuple[int, ...]] = set()
                for repeat in range(self.repeats):
                    order = list(range(len(bins)))
                    if not ordinal and repeat > 0:
                        rng.shuffle(order)
                    key = tuple(order)
                    if self.method == "logprobs" and key in seen:
                        continue  # the same question twice gives the same distribution
                    seen.add(key)
                    options = tuple(bins[i] for i in order)
                    questions.append(
                        _Question(
                            t, a_index, options, key, self._messages(text, axis, options), repeat
                        )
                    )
        return questions

    # -- answers ----------------------------------------------------------------------------

    async def judge(self, texts: Sequence[str]) -> list[Judgement]:
        """Judge every text (all questions go to the model in one batch)."""
        questions = self._questions(texts)
        distributions = None
        if self.method == "logprobs":
            distributions = await self._by_logprobs(questions)
            if distributions is None:  # the server gave no top log-probabilities
                self.method = "parsed"
                questions = self._questions(texts)
        if distributions is not None:
            unparsed = [0] * len(questions)
        else:
            distributions, unparsed = await self._by_parsing(questions)
        per_text: dict[tuple[int, int], list[np.ndarray]] = {}
        misses: dict[int, int] = {}
        for question, dist, miss in zip(questions, distributions, unparsed, strict=True):
            bins = np.zeros(len(question.options))
            for shown, probability in enumerate(dist):
                bins[question.order[shown]] += probability
            per_text.setdefault((question.text_index, question.axis_index), []).append(bins)
            misses[question.text_index] = misses.get(question.text_index, 0) + miss
        results = []
        for t in range(len(texts)):
            axis_dists = []
            for a in range(len(self.task.axes)):
                axis_dists.append(_mean(per_text[(t, a)]))
            quality_dist = _mean(per_text[(t, -1)])
            expected = float(np.dot(quality_dist, np.arange(len(QUALITY_LEVELS))))
            results.append(
                Judgement(
                    bins=tuple(int(np.argmax(d)) for d in axis_dists),
                    distributions=tuple(tuple(round(float(p), 4) for p in d) for d in axis_dists),
                    quality=expected / (len(QUALITY_LEVELS) - 1),
                    method=self.method,
                    unparsed=misses.get(t, 0),
                )
            )
        return results

    async def _by_logprobs(self, questions: Sequence[_Question]) -> list[np.ndarray] | None:
        """Option distributions from next-token log-probabilities: rendered prompts for
        the local backend, chat requests with ``top_logprobs`` for a server (None when
        the server does not give them)."""
        lm = self.lm
        local = isinstance(lm, LogprobModel) and not self._remote

        def render(messages: Sequence[dict]) -> Any:  # local: through the chat template
            return lm.render(GenerationRequest(messages=tuple(messages))) if local else messages

        prompts = [render(q.prompt) for q in questions]
        # contextual calibration (Zhao et al. 2021, arXiv 2102.09690): the same question
        # about a content-free text gives the judge's prior over the option numbers (small
        # models favour "1"); dividing by it removes that bias
        blanks: dict[tuple[int, tuple[int, ...]], int] = {}
        if self.calibrate:
            for q in questions:
                key = (q.axis_index, q.order)
                if key not in blanks:
                    axis = None if q.axis_index < 0 else self.task.axes[q.axis_index]
                    blanks[key] = len(prompts)
                    blank = self._messages("N/A", axis, q.options)
                    prompts.append(render(blank))
        sizes = [len(q.options) for q in questions]
        blank_sizes = {index: len(order) for (_, order), index in blanks.items()}
        groups: dict[int, list[int]] = {}
        for i in range(len(prompts)):
            size = sizes[i] if i < len(questions) else blank_sizes[i]
            groups.setdefault(size, []).append(i)
        distributions: list[np.ndarray] = [np.zeros(0)] * len(prompts)
        for count, indices in groups.items():
            labels = [str(i + 1) for i in range(count)]
            batch = [prompts[i] for i in indices]
            if local:
                logps = await lm.option_logprobs(batch, labels)  # type: ignore[union-attr]
            else:
                assert isinstance(lm, ChatLogprobModel)
                found = await lm.chat_option_logprobs(batch, labels)
                if found is None:
                    return None
                logps = found
            for i, row in zip(indices, logps, strict=True):
                p = np.exp(np.array(row) - max(row))
                distributions[i] = p / p.sum()
        out = []
        for q, dist in zip(questions, distributions[: len(questions)], strict=True):
            if self.calibrate:
                dist = dist / np.maximum(distributions[blanks[(q.axis_index, q.order)]], 1e-6)
                dist = dist / dist.sum()
            out.append(dist)
        return out

    async def _by_parsing(
        self, questions: Sequence[_Question]
    ) -> tuple[list[np.ndarray], list[int]]:
        requests = [  # each repeat is its own question, sampled when there are several
            GenerationRequest(
                messages=tuple(q.prompt),
                n=1,
                max_tokens=8,
                temperature=0.0 if self.repeats == 1 else 0.7,
                seed=_stable_hash(f"{self.seed}:{q.repeat}:{q.prompt}"),  # not the position
            )
            for q in questions
        ]
        results = await self.lm.generate(requests)
        dists, misses = [], []
        for question, result in zip(questions, results, strict=True):
            dist = np.zeros(len(question.options))
            missed = 0
            for generation in result.generations:
                choice = parse_option(generation.text, len(question.options))
                if choice is None:
                    missed += 1
                else:
                    dist[choice] += 1
            if dist.sum() == 0:
                dist[:] = 1.0  # no answer: uniform, so the text is not placed by accident
            dists.append(dist / dist.sum())
            misses.append(missed)
        return dists, misses


def parse_option(answer: str, count: int) -> int | None:
    """The 0-based option an answer names: its first number in 1..count."""
    for match in re.finditer(r"\d+", answer):
        value = int(match.group())
        if 1 <= value <= count:
            return value - 1
        break
    return None


def _mean(arrays: list[np.ndarray]) -> np.ndarray:
    return np.mean(np.stack(arrays), axis=0)


def _stable_hash(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")


__all__ = ["QUALITY_LEVELS", "Judge", "Judgement", "parse_option"]
