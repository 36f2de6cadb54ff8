"""Decoding memory is bounded: batches cut by an estimate of their bytes, batches side by
side sharing one budget, freed memory given back, and a long solve whose resident memory
stays flat (quick tier: a tiny model); the int8 weights are 7-bit; the default compute type
is the one every command uses."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from openended.config import ModelConfig, load_config
from openended.lm.base import GenerationRequest
from openended.lm.conversion import INT8_LEVELS, quantize_weights, weight_scheme
from openended.lm.ctranslate import CTranslate2LM, _Row
from openended.lm.local import TransformersLM
from openended.lm.memory import MIB, DecodeMemory, MemoryBudget
from tests.lm.tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_the_estimate_grows_with_rows_prompt_and_new_tokens() -> None:
    config = {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
    }
    grouped = DecodeMemory.from_config(config)
    full = DecodeMemory.from_config(config, full_heads=True, cache_copies=2)
    assert full.kv_bytes_per_token == 6 * grouped.kv_bytes_per_token == 6 * 46080
    base = grouped.batch_bytes(4, 500, 128)
    assert grouped.batch_bytes(8, 500, 128) == 2 * base
    assert grouped.batch_bytes(4, 1000, 128) > 2 * base  # attention is quadratic
    assert grouped.batch_bytes(4, 500, 256) > base


def test_ctranslate2_batches_stay_within_the_memory_budget(tiny: Path) -> None:
    lm = CTranslate2LM(tiny, compute_type="float32", threads=2, max_batch_mib=16)
    ids = list(range(3, 403))
    request = GenerationRequest(prompt="x", max_tokens=64, temperature=1.0)
    rows = [_Row(0, i, ids, [], request, i) for i in range(40)]
    budget = lm.batch_budget()
    chunks = lm._chunks(rows)
    assert sum(len(c) for c in chunks) == 40
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk) == 1 or lm.memory.batch_bytes(len(chunk), 400, 64) <= budget
    roomy = CTranslate2LM(tiny, compute_type="float32", threads=2, max_batch_mib=4096)
    assert len(roomy._chunks(rows)) < len(chunks)


def test_transformers_batches_count_the_tokens_they_will_generate(tiny: Path) -> None:
    lm = TransformersLM(tiny, speculative="off", max_batch_mib=16)
    ids = list(range(3, 403))
    short = GenerationRequest(prompt="x", max_tokens=8)
    long = GenerationRequest(prompt="x", max_tokens=2048)
    rows_short = [lm_row(ids, short, i) for i in range(40)]
    rows_long = [lm_row(ids, long, i) for i in range(40)]
    assert len(lm._chunks(rows_long)) > len(lm._chunks(rows_short))
    for chunk in lm._chunks(rows_long):
        assert len(chunk) == 1 or lm.memory.batch_bytes(len(chunk), 400, 2048) <= 16 * MIB


def lm_row(ids: list[int], request: GenerationRequest, index: int) -> object:
    import torch

    from openended.lm.local import _Row as TorchRow

    return TorchRow(0, index, ids, request, torch.Generator())


def test_batches_side_by_side_share_one_budget() -> None:
    budget = MemoryBudget(100)
    inside: list[int] = []
    most = [0]
    lock = threading.Lock()

    def batch(size: int) -> None:
        with budget.hold(size):
            with lock:
                inside.append(size)
                most[0] = max(most[0], sum(inside))
            time.sleep(0.02)
            with lock:
                inside.remove(size)

    threads = [threading.Thread(target=batch, args=(s,)) for s in (60, 60, 30, 150, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert most[0] <= 150  # the oversized batch ran alone; the others within 100
    assert budget.used == 0


LONG_SOLVE = textwrap.dedent(
    """
    import asyncio, sys
    from openended.lm.ctranslate import CTranslate2LM
    from openended.domains.puzzles.p3 import Puzzle
    from openended.domains.puzzles.solve import solve_puzzles

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    class Rejects:
        solutions = type("S", (), {"info": {}})()
        async def verify_many(self, items):
            from openended.domains.puzzles.verify import Verdict
            return [Verdict(False, "wrong answer") for _ in items]

    lm = CTranslate2LM(sys.argv[1], compute_type="float32", threads=2)
    puzzles = [
        Puzzle(name=f"p{i}", sat=f"def sat(x: int):\\n    return x == {i}" + " + 0" * (i % 7) * 40,
               ans_type="int", sol_header="def sol():", sol_docstring="")
        for i in range(112)
    ]
    verifier = Rejects()
    def run(part):
        asyncio.run(solve_puzzles(lm, part, verifier, samples=8, max_tokens=32, chunk=8))
    run(puzzles[:48])  # the allocator's arenas settle (measured: flat after 48 puzzles)
    warm = rss()
    run(puzzles[48:])
    print(warm, rss())
    """
)


@pytest.mark.slow  # seconds: not the quick tier
def test_a_long_solve_keeps_its_resident_memory_flat(tiny: Path, tmp_path: Path) -> None:
    script = tmp_path / "solve.py"
    script.write_text(LONG_SOLVE)
    out = subprocess.run(
        [sys.executable, str(script), str(tiny)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    warm, end = map(float, out.stdout.split()[-2:])
    assert end - warm < 32, f"resident memory grew {end - warm:.0f} MiB over 64 more puzzles"


def test_int8_weights_are_seven_bit(tiny: Path) -> None:
    """On CPUs without AVX-512 VNNI, oneDNN's int8 GEMM adds pairs of u8 x s8 products in
    a saturating int16; |weight| <= 63 keeps 2 x 255 x 63 below 32,767."""
    from ctranslate2.converters import TransformersConverter

    spec = TransformersConverter(str(tiny))._load()
    spec.validate()
    reference = {}

    def keep(layer: object, name: str, value: object) -> None:
        if hasattr(layer, name.split("/")[-1] + "_scale") and hasattr(value, "numpy"):
            reference[name] = value.to("float32").numpy().copy()

    spec._visit(keep)
    quantized = quantize_weights(spec, INT8_LEVELS)
    assert quantized and quantized == set(reference)
    found = {}
    spec._visit(lambda layer, name, value: found.setdefault(name, (layer, value)))
    for name in quantized:
        layer, value = found[name]
        ints = value.numpy()
        assert ints.dtype == np.int8 and np.abs(ints).max() == INT8_LEVELS
        scale = getattr(layer, name.split("/")[-1] + "_scale").numpy()
        restored = ints.reshape(ints.shape[0], -1) / scale[:, None]
        error = np.abs(restored - reference[name].reshape(ints.shape[0], -1))
        assert np.all(error <= 0.5 / scale[:, None] + 1e-6)


def test_the_default_compute_type_is_what_every_command_uses(tiny: Path, tmp_path: Path) -> None:
    from openended.apps.cli.main import build_parser
    from openended.lm.factory import build_language_model

    default = ModelConfig().compute_type
    assert default == "int8" and weight_scheme(default) == "int8w7"
    saved = tmp_path / "config.toml"
    config = load_config(None)
    saved.write_text(config.to_toml())
    assert load_config(saved).model.compute_type == default
    parser = build_parser()
    for argv in (["solve", "p.json"], ["serve-model"]):
        assert parser.parse_args(argv).compute_type == default
    lm = build_language_model(ModelConfig(name=str(tiny)))
    assert isinstance(lm, CTranslate2LM)
    assert lm.compute_type == default and lm.path.name.startswith("int8w7-")
    assert lm.model_id.endswith("[ctranslate2 int8w7]")
    other = build_language_model(ModelConfig(name=str(tiny), compute_type="float32"))
    assert other.model_id != lm.model_id  # caches never mix the schemes' samples
