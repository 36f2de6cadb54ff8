"""Embedded-model decoding throughput versus batch size, measured side by side.

    python bench/lm_throughput.py [--tokens 32]

Each batch decodes `--tokens` new tokens per sequence (sampling at temperature 1.0,
no stop sequences) from short symbolic-regression prompts, as the search does.
"""

from __future__ import annotations

import argparse
import time

from openended.lm.base import GenerationRequest
from openended.lm.local import TransformersLM

PROMPT = (
    "Formulas for y as a function of m, v, u, w (kinetic energy of a mass m with velocity "
    "components v, u, w), each fitting the data better than the last:\n"
    "y = m*v\ny = m + v + u + w\ny = m*v**2\ny ="
)


def tokens_per_second(lm: TransformersLM, batch: int, tokens: int) -> tuple[float, float]:
    requests = [
        GenerationRequest(prompt=PROMPT, max_tokens=tokens, temperature=1.0, seed=i)
        for i in range(batch)
    ]
    start = time.perf_counter()
    results = lm.generate_sync(requests)
    seconds = time.perf_counter() - start
    generated = sum(g.completion_tokens for r in results for g in r.generations)
    return generated / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()
    lm = TransformersLM.embedded(max_batch_size=max(args.batches))
    tokens_per_second(lm, 2, 4)  # warm up
    print(f"embedded SmolLM2-135M, fp32, {args.tokens} new tokens per sequence")
    print(f"{'batch':>5} {'tokens/s':>9} {'seconds':>8} {'vs batch 1':>11}")
    base = None
    for batch in args.batches:
        rate, seconds = tokens_per_second(lm, batch, args.tokens)
        base = base or rate
        print(f"{batch:>5} {rate:>9.1f} {seconds:>8.2f} {rate / base:>10.1f}x")


if __name__ == "__main__":
    main()
