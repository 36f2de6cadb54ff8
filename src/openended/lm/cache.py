"""A completion cache in SQLite, keyed by model id, prompt, sampling parameters and seed.

Replaying a run with the cache on reproduces it without calling the model. Only
requests that are reproducible by construction are cached: seeded ones, and greedy ones
(temperature 0). Failed generations are never cached.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from openended.lm.base import (
    ChatLogprobModel,
    Generation,
    GenerationRequest,
    GenerationResult,
    LanguageModel,
    LogprobModel,
    SpeculatingModel,
)
from openended.sqlite import connect_wal


def cache_key(model_id: str, request: GenerationRequest, *, speculative: bool = False) -> str:
    """A sha256 over everything that determines a request's output (`speculative`: the
    backend decodes it speculatively, which draws other samples for the same seed)."""
    fields = {
        "model": model_id,
        "prompt": request.prompt,
        "messages": [dict(m) for m in request.messages] if request.messages else None,
        "n": request.n,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "min_p": request.min_p,
        "stop": list(request.stop),
        "seed": request.seed,
        "logprobs": request.logprobs,
    }
    if request.top_k:  # (only when set: earlier keys stay valid)
        fields["top_k"] = request.top_k
    if speculative:
        fields["speculative"] = True
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class CachedLM:
    """Wraps a language model with a persistent completion cache.

    Args:
        inner: the model that answers cache misses.
        path: the SQLite file (created if missing; shared safely between runs).

    Attributes:
        hits, misses: request counts since construction.
        calls: `generate` calls passed on to `inner`.
    """

    def __init__(self, inner: LanguageModel, path: Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect_wal(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, model TEXT NOT NULL,"
            " generations TEXT NOT NULL)"
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.calls = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @staticmethod
    def cacheable(request: GenerationRequest) -> bool:
        return request.seed is not None or request.temperature == 0

    def _get(self, key: str) -> tuple[Generation, ...] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT generations FROM completions WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        items = json.loads(row[0])
        return tuple(
            Generation(
                **{
                    **item,
                    "logprobs": tuple(item["logprobs"]) if item["logprobs"] else None,
                    "faults": (),
                }
            )
            for item in items
        )

    def _put(self, key: str, generations: Sequence[Generation]) -> None:
        payload = json.dumps(
            [
                {
                    "text": g.text,
                    "finish_reason": g.finish_reason,
                    "prompt_tokens": g.prompt_tokens,
                    "completion_tokens": g.completion_tokens,
                    "logprobs": list(g.logprobs) if g.logprobs is not None else None,
                    "error": None,
                }
                for g in generations
            ]
        )
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO completions (key, model, generations) VALUES (?, ?, ?)",
                (key, self.model_id, payload),
            )

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        inner = self.inner
        keys = [
            cache_key(
                self.model_id,
                r,
                speculative=isinstance(inner, SpeculatingModel) and inner.speculates(r),
            )
            if self.cacheable(r)
            else None
            for r in requests
        ]
        missing: list[int] = []
        for i, (request, key) in enumerate(zip(requests, keys, strict=True)):
            cached = self._get(key) if key is not None else None
            if cached is not None and len(cached) == request.n:
                results[i] = GenerationResult(request=request, generations=cached)
                self.hits += 1
            else:
                missing.append(i)
        if missing:
            self.misses += len(missing)
            self.calls += 1
            fresh = await self.inner.generate([requests[i] for i in missing])
            for i, result in zip(missing, fresh, strict=True):
                results[i] = result
                key = keys[i]
                if key is not None and all(
                    g.error is None and g.finish_reason != "error" for g in result.generations
                ):
                    self._put(key, result.generations)
        return [r for r in results if r is not None]

    def close(self) -> None:
        self._db.close()


class _CachedLogprobLM(CachedLM):
    """The cache over a `LogprobModel`: log-probabilities are read from the inner model,
    uncached (a forward pass, nothing sampled)."""

    inner: LogprobModel  # type: ignore[assignment]

    def render(self, request: GenerationRequest) -> str:
        return self.inner.render(request)

    async def option_logprobs(
        self, prompts: Sequence[str], options: Sequence[str]
    ) -> list[list[float]]:
        return await self.inner.option_logprobs(prompts, options)

    def next_token_top_logprobs(
        self, prompts: Sequence[str], k: int
    ) -> list[list[tuple[str, float]]]:
        return self.inner.next_token_top_logprobs(prompts, k)


class _CachedChatLogprobLM(CachedLM):
    """The cache over a `ChatLogprobModel` (its log-probabilities uncached)."""

    inner: ChatLogprobModel  # type: ignore[assignment]

    async def chat_option_logprobs(
        self, conversations: Sequence[Sequence[Mapping[str, str]]], options: Sequence[str]
    ) -> list[list[float]] | None:
        return await self.inner.chat_option_logprobs(conversations, options)


def cached(inner: LanguageModel, path: Path) -> CachedLM:
    """`inner` behind the completion cache at `path`; the result is a `LogprobModel` or a
    `ChatLogprobModel` exactly when `inner` is."""
    if isinstance(inner, LogprobModel):
        return _CachedLogprobLM(inner, path)
    if isinstance(inner, ChatLogprobModel):
        return _CachedChatLogprobLM(inner, path)
    return CachedLM(inner, path)
