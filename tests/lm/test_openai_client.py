"""The OpenAI-compatible backend against a fault-injecting local server."""

from __future__ import annotations

import re
import time

import pytest

import openended
from openended.lm.base import GenerationRequest
from openended.lm.openai_client import OpenAICompatibleLM
from openended.store import RunStore
from tests.conftest import COMPLETIONS
from tests.fault_server import FaultServer


def client(server: FaultServer, **options: object) -> OpenAICompatibleLM:
    settings = dict(model="fault", timeout=0.5, max_retries=6, backoff=0.01, seed=0)
    settings.update(options)
    return OpenAICompatibleLM(server.url, **settings)  # type: ignore[arg-type]


async def test_every_fault_is_retried_and_recorded() -> None:
    faults = ["500", "429", "malformed", "empty", "drop", "hang"]
    with FaultServer(faults) as server:
        lm = client(server)
        start = time.monotonic()
        (result,) = await lm.generate([GenerationRequest(prompt="y =", n=2, seed=3)])
        elapsed = time.monotonic() - start
    generations = result.generations
    assert [g.text for g in generations] == [COMPLETIONS[3], COMPLETIONS[4]]
    assert all(g.error is None for g in generations)
    recorded = generations[0].faults
    assert len(recorded) == 6
    assert "InternalServerError (HTTP 500)" in recorded[0]
    assert "RateLimitError (HTTP 429)" in recorded[1]
    assert "EmptyResponseError" in recorded[3]
    assert "APIConnectionError" in recorded[4]
    assert "APITimeoutError" in recorded[5]
    arrivals = [t for _, t in server.log]
    assert arrivals[2] - arrivals[1] >= 0.95  # waited for Retry-After: 1
    assert elapsed < 10
    assert lm.usage["attempts"] == 7 and lm.usage["completion_tokens"] == 6
    assert generations[0].prompt_tokens == 10 and generations[1].prompt_tokens == 0


async def test_exhausted_retries_give_an_error_result_not_an_exception() -> None:
    with FaultServer(default="500") as server:
        lm = client(server, max_retries=2)
        results = await lm.generate(
            [GenerationRequest(prompt="a", n=2, seed=1), GenerationRequest(prompt="b", seed=2)]
        )
    assert len(server.log) == 6
    for result in results:
        for g in result.generations:
            assert g.finish_reason == "error"
            assert g.error.startswith("failed after 3 attempt(s): InternalServerError (HTTP 500)")
    assert len(results[0].generations) == 2


async def test_concurrency_limit() -> None:
    with FaultServer(default="slow") as server:
        server.slow_seconds = 0.2
        lm = client(server, max_concurrency=2)
        start = time.monotonic()
        await lm.generate([GenerationRequest(prompt=str(i), seed=i) for i in range(4)])
        elapsed = time.monotonic() - start
    arrivals = sorted(t for _, t in server.log)
    assert arrivals[2] - arrivals[0] >= 0.15  # the third waited for a free slot
    assert elapsed >= 0.35


@pytest.mark.slow  # a whole search through a faulty server
def test_search_finishes_through_faults_and_records_each(small_config) -> None:
    schedule = [
        "500",
        "500",
        "429",
        "ok",
        "malformed",
        "ok",
        "empty",
        "ok",
        "drop",
        "ok",
        "hang",
        "ok",
    ]
    config = small_config(max_evaluations=30)
    with FaultServer(schedule) as server:
        config["model"] = {
            "name": server.url,
            "model_name": "fault",
            "max_concurrency": 1,
            "max_retries": 1,
            "timeout": 1.0,
        }
        result = openended.run(config)
    assert result.outcome.stopped_by == "budget: evaluations (30)"
    with RunStore(result.run_dir) as store:
        children = [c for c in store.candidates() if c.operator != "seed"]
    first = children[0]
    assert first.status == "lm_error"
    assert first.error.startswith("failed after 2 attempt(s): InternalServerError (HTTP 500)")
    assert len(first.lm_faults) == 2
    recorded = [c.lm_faults[0] for c in children[1:6]]
    for fragment in (
        "HTTP 429",
        "APIResponseValidationError|JSONDecodeError|APIError",
        "EmptyResponseError",
        "APIConnectionError",
        "APITimeoutError",
    ):
        assert any(re.search(fragment, r) for r in recorded), (fragment, recorded)
    assert all(c.status != "lm_error" for c in children[1:])
    assert sum(c.status == "valid" for c in children) > 5


async def test_a_bad_request_is_not_retried() -> None:
    with FaultServer(["400"]) as server:
        (result,) = await client(server).generate([GenerationRequest(prompt="x", seed=1)])
    assert len(server.log) == 1
    assert result.generations[0].error == (
        "failed after 1 attempt(s): BadRequestError (HTTP 400): Error code: 400 - bad"
    )
