"""The `LanguageModel` protocol (async, batched text generation) and the optional
log-probability protocols some backends add."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "eos", "error"]


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete, `n` times.

    Exactly one of `prompt` (raw completion) or `messages` (chat, rendered with the
    model's chat template) is set.
    """

    prompt: str | None = None
    messages: tuple[Mapping[str, str], ...] | None = None
    n: int = 1
    max_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    """Sample among the `top_k` likeliest tokens only (0: off)."""
    min_p: float = 0.0
    """Min-p sampling (Nguyen et al. 2024, arXiv 2407.01082): drop tokens less likely than
    ``min_p`` times the most likely one (0: off)."""
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    speculate: bool = False
    """A hint that the completion copies much of the prompt (a rewrite of a parent): a
    local backend in ``speculative = "auto"`` mode decodes it with exact speculative
    sampling (the same output distribution, fewer forward passes)."""

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("GenerationRequest needs exactly one of `prompt` or `messages`")
        if self.n < 1:
            raise ValueError(f"GenerationRequest.n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"GenerationRequest.max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"GenerationRequest.temperature must be >= 0, got {self.temperature}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"GenerationRequest.min_p must be in [0, 1), got {self.min_p}")
        if self.top_k < 0:
            raise ValueError(f"GenerationRequest.top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"GenerationRequest.top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class Generation:
    """One completion of a request."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    logprobs: tuple[float, ...] | None = None
    error: str | None = None
    faults: tuple[str, ...] = ()
    """Failed attempts before this result (a remote backend's retries), one line each."""


@dataclass(frozen=True)
class GenerationResult:
    """All `n` completions of one request, in order."""

    request: GenerationRequest
    generations: tuple[Generation, ...] = field(default_factory=tuple)


@runtime_checkable
class LanguageModel(Protocol):
    """Anything that completes batches of requests.

    `generate` returns one `GenerationResult` per request, in request order, each
    with `request.n` generations. Implementations batch internally; callers should
    pass as many requests as they have.
    """

    model_id: str

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...


@runtime_checkable
class LogprobModel(Protocol):
    """A local model that reads next-token log-probabilities (one forward pass, nothing
    sampled): judges read a distribution over option labels from it, and `serve-model`
    answers ``top_logprobs`` with it. The transformers and ctranslate2 backends are."""

    def render(self, request: GenerationRequest) -> str:
        """The raw prompt a request becomes (chat messages through the chat template)."""
        ...

    async def option_logprobs(
        self, prompts: Sequence[str], options: Sequence[str]
    ) -> list[list[float]]:
        """Per raw prompt, the log-probability that the next token starts each option."""
        ...

    def next_token_top_logprobs(
        self, prompts: Sequence[str], k: int
    ) -> list[list[tuple[str, float]]]:
        """Per raw prompt, the `k` likeliest next tokens with their log-probabilities."""
        ...


@runtime_checkable
class ChatLogprobModel(Protocol):
    """A server model whose chat replies may carry ``top_logprobs`` (OpenAI-compatible)."""

    async def chat_option_logprobs(
        self, conversations: Sequence[Sequence[Mapping[str, str]]], options: Sequence[str]
    ) -> list[list[float]] | None:
        """Per conversation, the log-probability that the reply starts with each option;
        None when the server gives no top log-probabilities."""
        ...


@runtime_checkable
class SpeculatingModel(Protocol):
    """A local model that decodes some requests speculatively (other samples for the same
    seed: the completion cache keys them apart)."""

    def speculates(self, request: GenerationRequest) -> bool: ...


@runtime_checkable
class ClosableModel(Protocol):
    """A model holding resources (threads, Ray actors, a cache file) to release."""

    def close(self) -> None: ...
