"""Local decoding throughput, both backends side by side in one run: tokens/s by batch size
(int8 and float32 CTranslate2, transformers), one and two threads, on an idle machine and
with two busy evaluator processes beside it; then completions per minute of the default
search with each backend.

    python bench/lm_throughput.py [--tokens 32] [--search-calls 6]

Aims (issue 19): CTranslate2 >= 2.5x the transformers path's tokens/s at batch 1 and 16
idle; no collapse when evaluations share the cores (busy within 1.5x of idle); >= 3x
completions per minute in the default search.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from openended.lm.base import GenerationRequest
from openended.lm.ctranslate import CTranslate2LM
from openended.lm.embedded import fetch
from openended.lm.local import TransformersLM

PROMPT = (
    "Formulas for y as a function of m, v, u, w (kinetic energy of a mass m with velocity "
    "components v, u, w), each fitting the data better than the last:\n"
    "y = m*v\ny = m + v + u + w\ny = m*v**2\ny ="
)


def tokens_per_second(generate: Callable, batch: int, tokens: int) -> float:
    requests = [
        GenerationRequest(prompt=PROMPT, max_tokens=tokens, temperature=1.0, seed=i)
        for i in range(batch)
    ]
    start = time.perf_counter()
    results = generate(requests)
    seconds = time.perf_counter() - start
    return sum(g.completion_tokens for r in results for g in r.generations) / seconds


@contextmanager
def busy_evaluators(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPU, as evaluations running beside a search."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True:\n    pass"]) for _ in range(count)
    ]
    time.sleep(0.5)
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def backends(source: Path, threads: int) -> dict[str, Callable]:
    """name -> generate_sync, for one thread count."""
    transformers = TransformersLM(source, speculative="off", max_batch_size=64, threads=threads)
    int8 = CTranslate2LM(source, compute_type="int8", threads=threads, max_batch_size=64)
    float32 = CTranslate2LM(source, compute_type="float32", threads=threads, max_batch_size=64)

    def torch_path(requests: list) -> list:
        torch.set_num_threads(threads)  # the other thread count's model set it too
        return transformers.generate_sync(requests)

    return {
        "transformers": torch_path,
        "ct2 int8": int8.generate_sync,
        "ct2 float32": float32.generate_sync,
    }


def throughput_table(source: Path, tokens: int, batches: list[int]) -> None:
    print(f"tokens/s, {tokens} new tokens per sequence, T = 1 (side by side, same process)")
    columns = ("transformers", "ct2 int8", "ct2 fp32")
    print(f"{'load':>5} {'thr':>3} {'batch':>5} {columns[0]:>12} {columns[1]:>14} {columns[2]:>14}")
    models = {threads: backends(source, threads) for threads in (1, 2)}
    for fn in models[1].values():
        fn([GenerationRequest(prompt=PROMPT, max_tokens=4, temperature=1.0, seed=0)])
    for load, busy in (("idle", 0), ("busy", 2)):
        with busy_evaluators(busy):
            for threads in (1, 2):
                for batch in batches if load == "idle" else [1, 16]:
                    wanted = tokens if load == "idle" else max(8, tokens // 2)
                    rates = {
                        name: tokens_per_second(fn, batch, wanted)
                        for name, fn in models[threads].items()
                    }
                    base = rates["transformers"]
                    print(
                        f"{load:>5} {threads:>3} {batch:>5} {base:>12.1f} "
                        f"{rates['ct2 int8']:>7.1f} ({rates['ct2 int8'] / base:>3.1f}x) "
                        f"{rates['ct2 float32']:>7.1f} ({rates['ct2 float32'] / base:>3.1f}x)",
                        flush=True,
                    )


def search_rate(backend: str, calls: int) -> tuple[float, int]:
    """Completions per minute of the default search (its config, `calls` LM calls), in
    steady state: from the first batch's commit to the last (loading the model and
    scoring the seeds left out)."""
    import openended
    from openended.store import RunStore

    with tempfile.TemporaryDirectory() as runs:
        result = openended.run(
            {
                "runs_dir": runs,
                "name": backend,
                "model": {"backend": backend},
                "budget": {"max_lm_calls": calls + 1},
            }
        )
        with RunStore(result.run_dir) as store:
            batches = store.frame("batches").set_index("batch")
            children = store.frame("candidates").query("batch >= 2")
    minutes = (batches.loc[batches.index.max(), "created_at"] - batches.loc[1, "created_at"]) / 60
    return len(children) / minutes, len(children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--search-calls", type=int, default=8)
    args = parser.parse_args()
    source = fetch()
    throughput_table(source, args.tokens, args.batches)
    print(f"\ndefault search, {args.search_calls} LM calls in steady state (evaluation included)")
    rates = {}
    for backend in ("transformers", "ctranslate2"):
        rates[backend], done = search_rate(backend, args.search_calls)
        print(f"{backend:>12}: {rates[backend]:6.1f} completions/min ({done} completions)")
    print(f"ratio: {rates['ctranslate2'] / rates['transformers']:.1f}x", flush=True)


if __name__ == "__main__":
    main()
