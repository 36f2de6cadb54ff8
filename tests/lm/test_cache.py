"""The SQLite completion cache."""

from __future__ import annotations

from pathlib import Path

import openended
from openended.lm.base import GenerationRequest
from openended.lm.cache import CachedLM, cache_key
from openended.lm.scripted import ScriptedLM
from openended.store import RunStore
from tests.conftest import seeded_script


def candidates(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [(c.id, c.parents, c.completion, c.genome, c.status) for c in store.candidates()]


def test_replay_with_the_cache_makes_no_model_calls(small_config, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    config = small_config(max_evaluations=50)
    config["model"] = {"cache": True, "cache_path": str(cache)}
    first_lm = ScriptedLM(seeded_script)
    first = openended.run({**config, "name": "first"}, lm=first_lm)
    assert first_lm.calls > 0
    replay_lm = ScriptedLM(lambda _r, _i: "never called")
    replay = openended.run({**config, "name": "replay"}, lm=replay_lm)
    assert replay_lm.calls == 0
    assert replay.archive.equals(first.archive)
    assert candidates(replay.run_dir) == candidates(first.run_dir)


async def test_keys_cover_every_sampling_parameter(tmp_path: Path) -> None:
    base = GenerationRequest(prompt="p", seed=1)
    variants = [
        GenerationRequest(prompt="q", seed=1),
        GenerationRequest(prompt="p", seed=2),
        GenerationRequest(prompt="p", seed=1, temperature=0.5),
        GenerationRequest(prompt="p", seed=1, top_p=0.5),
        GenerationRequest(prompt="p", seed=1, max_tokens=5),
        GenerationRequest(prompt="p", seed=1, n=2),
        GenerationRequest(prompt="p", seed=1, stop=("\n",)),
        GenerationRequest(messages=({"role": "user", "content": "p"},), seed=1),
    ]
    keys = {cache_key("m", v) for v in variants} | {cache_key("m", base), cache_key("m2", base)}
    assert len(keys) == len(variants) + 2


async def test_unseeded_sampling_and_errors_are_not_cached(tmp_path: Path) -> None:
    inner = ScriptedLM(["a", "b", "c", "d"])
    lm = CachedLM(inner, tmp_path / "c.sqlite")
    unseeded = GenerationRequest(prompt="p", temperature=1.0)
    greedy = GenerationRequest(prompt="p", temperature=0.0)
    first = await lm.generate([unseeded, greedy])
    second = await lm.generate([unseeded, greedy])
    assert first[1].generations == second[1].generations  # greedy: cached
    assert first[0].generations != second[0].generations  # unseeded sampling: not cached
    assert (lm.hits, lm.misses) == (1, 3)
