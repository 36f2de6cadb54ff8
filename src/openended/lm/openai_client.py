"""A backend for any OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, hosted APIs.

Built on the official `openai` client (`AsyncOpenAI`) with its own retry loop, so that
every fault is visible: retries with exponential backoff and full jitter on 429, 5xx,
connection errors, timeouts, malformed responses and empty choice lists, honouring
``Retry-After``. A request that still fails comes back as generations with
``finish_reason="error"`` and the error text; it never raises, so one bad request does not
lose the rest of a batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import openai

from openended.lm.base import Generation, GenerationRequest, GenerationResult

Endpoint = Literal["auto", "chat", "completions"]


class EmptyResponseError(RuntimeError):
    """The server answered without any choice."""


class ModelListError(RuntimeError):
    """The server's model list could not be read, and no model name was given."""


RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APIConnectionError,  # includes APITimeoutError
    openai.APIResponseValidationError,
    json.JSONDecodeError,
    EmptyResponseError,
)


def describe_error(exc: BaseException) -> str:
    """A one-line description of a failed attempt, with the HTTP status when there is one."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{name}{f' (HTTP {status})' if status else ''}: {message}".rstrip(": ")


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's requested wait (``Retry-After-Ms`` / ``Retry-After``), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleLM:
    """Generate through an OpenAI-compatible HTTP API.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the server's model name; None asks the server (``GET /models``) once.
        api_key_env: environment variable holding the API key (may be unset for local
            servers).
        endpoint: ``"auto"`` sends prompts to ``/completions`` and chat messages to
            ``/chat/completions``; ``"chat"`` sends prompts as one user message (for
            chat-only APIs); ``"completions"`` refuses chat requests.
        max_concurrency: most requests in flight at once.
        timeout: seconds per attempt.
        max_retries: retries after the first attempt.
        backoff: first backoff in seconds (doubled per retry, with full jitter).
        max_backoff: longest wait between attempts, also the cap on ``Retry-After``.
        seed: seeds the jitter.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        endpoint: Endpoint = "auto",
        max_concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        seed: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.endpoint = endpoint
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(api_key_env) or "not-needed",
            max_retries=0,
            timeout=timeout,
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._rng = random.Random(seed)
        self._model_lock = asyncio.Lock()
        self.usage = {"requests": 0, "attempts": 0, "prompt_tokens": 0, "completion_tokens": 0}

    @property
    def model_id(self) -> str:
        return f"{self.model or '?'}@{self.base_url}"

    async def _model_name(self) -> str:
        async with self._model_lock:
            if self.model is None:
                try:
                    models = await self.client.models.list()
                    names = [m.id for m in models.data]
                except RETRYABLE:
                    raise
                except Exception as exc:
                    raise ModelListError(
                        f"could not read the model list at {self.base_url}/models "
                        f"({describe_error(exc)}); set model.model_name / --model-name"
                    ) from exc
                if not names:
                    raise ModelListError(
                        f"{self.base_url}/models lists no model; set model.model_name"
                    )
                self.model = names[0]
        return self.model

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def chat_option_logprobs(
        self, conversations: Sequence[Sequence[Mapping[str, str]]], options: Sequence[str]
    ) -> list[list[float]] | None:
        """For each conversation, the log-probability that the reply starts with each
        option, read from the first token's ``top_logprobs`` (one token, temperature 0).
        None when the server gives no top log-probabilities (the judge then parses
        sampled answers). An option missing from the top 20 gets the lowest listed
        log-probability minus 1 (it is at most that likely)."""

        async def one(messages: Sequence[Mapping[str, str]]) -> list[float] | None:
            model = await self._model_name()
            async with self._semaphore:
                response = await self.client.chat.completions.create(
                    model=model,
                    messages=[dict(m) for m in messages],  # type: ignore[misc]
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=20,
                )
            choice = response.choices[0] if response.choices else None
            content = choice.logprobs.content if choice and choice.logprobs else None
            if not content or not content[0].top_logprobs:
                return None
            scores: dict[str, list[float]] = {}
            for alternative in content[0].top_logprobs:
                scores.setdefault(alternative.token.strip(), []).append(alternative.logprob)
            floor = min(a.logprob for a in content[0].top_logprobs) - 1.0
            return [
                float(np.logaddexp.reduce(scores[o])) if o in scores else floor for o in options
            ]

        rows = await asyncio.gather(*(one(c) for c in conversations))
        if any(r is None for r in rows):
            return None
        return rows  # type: ignore[return-value]

    def _wait(self, attempt: int, exc: BaseException) -> float:
        asked = retry_after_seconds(exc)
        if asked is not None:
            return min(asked, self.max_backoff)
        return self._rng.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))

    async def _one(self, request: GenerationRequest) -> GenerationResult:
        faults: list[str] = []
        async with self._semaphore:
            self.usage["requests"] += 1
            for attempt in range(self.max_retries + 1):
                self.usage["attempts"] += 1
                try:
                    generations = await self._call(request)
                except RETRYABLE as exc:
                    faults.append(describe_error(exc))
                    if attempt == self.max_retries:
                        break
                    await asyncio.sleep(self._wait(attempt, exc))
                    continue
                except (openai.OpenAIError, ModelListError, ValueError, TypeError, KeyError) as exc:
                    faults.append(describe_error(exc))  # not worth retrying (4xx, bad request)
                    break
                return GenerationResult(
                    request=request,
                    generations=tuple(
                        dataclasses.replace(g, faults=tuple(faults)) for g in generations
                    ),
                )
        error = f"failed after {len(faults)} attempt(s): {faults[-1]}"
        failed = Generation(
            text="",
            finish_reason="error",
            prompt_tokens=0,
            completion_tokens=0,
            error=error,
            faults=tuple(faults),
        )
        return GenerationResult(request=request, generations=(failed,) * request.n)

    async def _call(self, request: GenerationRequest) -> list[Generation]:
        model = await self._model_name()
        common: dict[str, Any] = dict(
            model=model,
            n=request.n,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
        )
        extra = {"min_p": request.min_p, "top_k": request.top_k}
        extra = {k: v for k, v in extra.items() if v}  # not in the OpenAI API; vLLM,
        if extra:  # llama.cpp and serve-model accept them
            common["extra_body"] = extra
        if request.stop:
            common["stop"] = list(request.stop)[:4]
        if request.seed is not None:
            common["seed"] = request.seed
        use_chat = request.messages is not None or self.endpoint == "chat"
        if use_chat and self.endpoint == "completions":
            raise ValueError("endpoint = 'completions' cannot send chat messages")
        if use_chat:
            messages = (
                [dict(m) for m in request.messages]
                if request.messages is not None
                else [{"role": "user", "content": request.prompt}]
            )
            if request.logprobs:
                common["logprobs"] = True
            response = await self.client.chat.completions.create(messages=messages, **common)
            choices = [
                (
                    c.message.content or "",
                    c.finish_reason,
                    [t.logprob for t in c.logprobs.content]
                    if c.logprobs is not None and c.logprobs.content
                    else None,
                )
                for c in (response.choices or [])
            ]
        else:
            if request.logprobs:
                common["logprobs"] = 1
            response = await self.client.completions.create(prompt=request.prompt, **common)
            choices = [
                (
                    c.text or "",
                    c.finish_reason,
                    [float(x) for x in c.logprobs.token_logprobs if x is not None]
                    if c.logprobs is not None and c.logprobs.token_logprobs
                    else None,
                )
                for c in (response.choices or [])
            ]
        if not choices:
            raise EmptyResponseError("the server returned no choices")
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        self.usage["prompt_tokens"] += prompt_tokens
        self.usage["completion_tokens"] += completion_tokens
        # Usage is per response: the prompt is counted once (on the first choice) and the
        # completion tokens are shared out between the choices.
        share, extra = divmod(completion_tokens, len(choices))
        generations = []
        for i, (text, finish, logprobs) in enumerate(choices):
            generations.append(
                Generation(
                    text=text,
                    finish_reason="length" if finish == "length" else "stop",
                    prompt_tokens=prompt_tokens if i == 0 else 0,
                    completion_tokens=share + (extra if i == 0 else 0),
                    logprobs=tuple(logprobs) if logprobs is not None else None,
                )
            )
        while len(generations) < request.n:  # a server that returns fewer than n choices
            generations.append(
                Generation(
                    text="",
                    finish_reason="error",
                    prompt_tokens=0,
                    completion_tokens=0,
                    error=f"the server returned {len(choices)} of {request.n} choices",
                )
            )
        return generations[: request.n]

    async def close(self) -> None:
        await self.client.close()
