"""A scripted language model: returns known completions. For tests and benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from openended.lm.base import Generation, GenerationRequest, GenerationResult

Script = Callable[[GenerationRequest, int], str]


class ScriptedLM:
    """Completes each request with `script(request, sample_index)`.

    Args:
        script: a function of the request and the sample index, or a list of strings
            returned in turn (cycled).
        latency: seconds to sleep per `generate` call (0 for none).
    """

    def __init__(self, script: Script | Sequence[str], *, latency: float = 0.0) -> None:
        self.model_id = "scripted"
        self.calls = 0
        self.requests: list[GenerationRequest] = []
        self._latency = latency
        if callable(script):
            self._script: Script = script
        else:
            items = list(script)
            if not items:
                raise ValueError("ScriptedLM needs at least one completion")
            counter = iter(range(1 << 62))
            self._script = lambda _request, _i: items[next(counter) % len(items)]

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.calls += 1
        if self._latency:
            await asyncio.sleep(self._latency)
        results = []
        for request in requests:
            self.requests.append(request)
            prompt_tokens = len((request.prompt or str(request.messages)).split())
            gens = []
            for i in range(request.n):
                text = self._script(request, i)
                gens.append(
                    Generation(
                        text=text,
                        finish_reason="stop",
                        prompt_tokens=prompt_tokens,
                        completion_tokens=max(1, len(text.split())),
                    )
                )
            results.append(GenerationResult(request=request, generations=tuple(gens)))
        return results
