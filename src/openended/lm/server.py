"""`openended serve-model`: an OpenAI-compatible HTTP server for local transformers models.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /health``. Concurrent requests are generated together by a `DynamicBatcher`.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from openended.lm.base import GenerationRequest, GenerationResult, LogprobModel
from openended.lm.batching import DynamicBatcher


class BatchedModel(Protocol):
    model_id: str

    def generate_sync(self, requests: Any) -> list[GenerationResult]: ...


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    n: int = Field(1, ge=1, le=64)
    max_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float = Field(1.0, ge=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    min_p: float = Field(0.0, ge=0, lt=1)
    top_k: int = Field(0, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionBody(_Sampling):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=5)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatBody(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def create_app(
    model: BatchedModel,
    *,
    token: str | None = None,
    window: float = 0.005,
    max_rows: int = 32,
    default_max_tokens: int = 256,
) -> FastAPI:
    """The FastAPI application serving `model`.

    Args:
        model: a local model with a blocking batched `generate_sync`.
        token: when set, every request needs ``Authorization: Bearer <token>``.
        window: dynamic batching window in seconds (0 with `max_rows=1`: no batching).
        max_rows: most sequences per batch.
        default_max_tokens: used when a request gives no ``max_tokens``.
    """
    batcher = DynamicBatcher(model.generate_sync, window=window, max_rows=max_rows)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="openended model server", lifespan=lifespan)
    app.state.batcher = batcher

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if token is not None and request.url.path != "/health":
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _error(401, "missing or wrong bearer token", "authentication_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return _error(400, problems)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model.model_id,
            "batches": len(batcher.batches),
            "requests": sum(batcher.batches),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model.model_id, "object": "model", "owned_by": "openended"}],
        }

    def usage(results: list[GenerationResult]) -> dict[str, int]:
        prompt = sum(r.generations[0].prompt_tokens for r in results)
        completion = sum(g.completion_tokens for r in results for g in r.generations)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionBody) -> Any:
        if body.stream:
            return _error(400, "stream: streaming is not supported")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not prompts:
            return _error(400, "prompt: empty list")
        requests = [
            GenerationRequest(
                prompt=p,
                n=body.n,
                max_tokens=body.max_tokens or default_max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                min_p=body.min_p,
                top_k=body.top_k,
                stop=body.stops(),
                seed=None if body.seed is None else body.seed + i,
            )
            for i, p in enumerate(prompts)
        ]
        results = list(await asyncio.gather(*(batcher.submit(r) for r in requests)))
        choices = []
        for r in results:
            for g in r.generations:
                logprobs = None
                if body.logprobs is not None and g.logprobs is not None:
                    logprobs = {
                        "token_logprobs": list(g.logprobs),
                        "tokens": None,
                        "top_logprobs": None,
                        "text_offset": None,
                    }
                choices.append(
                    {
                        "index": len(choices),
                        "text": g.text,
                        "finish_reason": _finish(g.finish_reason),
                        "logprobs": logprobs,
                    }
                )
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model.model_id,
            "choices": choices,
            "usage": usage(results),
        }

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> Any:
        if body.stream:
            return _error(400, "stream: streaming is not supported")
        request = GenerationRequest(
            messages=tuple({"role": m.role, "content": m.content} for m in body.messages),
            n=body.n,
            max_tokens=body.max_completion_tokens or body.max_tokens or default_max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            min_p=body.min_p,
            top_k=body.top_k,
            stop=body.stops(),
            seed=body.seed,
        )
        result = await batcher.submit(request)
        first_top: list[dict[str, Any]] = []
        top_k = body.top_logprobs or 0
        if body.logprobs and top_k and isinstance(model, LogprobModel):
            # the first token's alternatives (what judges read); later tokens get none
            prompt = model.render(request)
            (pairs,) = await asyncio.to_thread(model.next_token_top_logprobs, [prompt], top_k)
            first_top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in pairs]
        choices = []
        for i, g in enumerate(result.generations):
            logprobs = None
            if body.logprobs and g.logprobs is not None:
                logprobs = {
                    "content": [
                        {
                            "token": "",
                            "logprob": lp,
                            "bytes": None,
                            "top_logprobs": first_top if position == 0 else [],
                        }
                        for position, lp in enumerate(g.logprobs)
                    ]
                }
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": g.text},
                    "finish_reason": _finish(g.finish_reason),
                    "logprobs": logprobs,
                }
            )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.model_id,
            "choices": choices,
            "usage": usage([result]),
        }

    return app
