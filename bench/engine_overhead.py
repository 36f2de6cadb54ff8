"""Engine overhead per candidate with a zero-latency scripted LM.

Everything but the language model is real: the symbolic-regression domain, the pyribs
archive, the SQLite store. Aim: under 2 ms per candidate.

    python bench/engine_overhead.py [--candidates 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

import openended
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM

TERMS = ["m", "v", "u", "w", "m*v", "v**2", "u**2", "w**2", "0.5*m", "sin(v)", "sqrt(u)", "2"]


def script(request: GenerationRequest, sample: int) -> str:
    rng = np.random.default_rng([request.seed or 0, sample])
    k = int(rng.integers(1, 6))
    ops = rng.choice(["+", "*", "-", "/"], size=k - 1)
    terms = rng.choice(TERMS, size=k)
    text = str(terms[0])
    for op, term in zip(ops, terms[1:], strict=True):
        text += f" {op} {term}"
    return " " + text


def measure(batch_size: int, candidates: int) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "runs_dir": tmp,
            "name": "bench",
            "search": {"batch_size": batch_size},
            "budget": {"max_evaluations": candidates, "max_seconds": 0},
            "domain": {"name": "symbolic_regression", "points": 256},
        }
        start = time.perf_counter()
        result = openended.run(config, lm=ScriptedLM(script))
        seconds = time.perf_counter() - start
        total = int(result.metrics["evaluations"].iloc[-1])
        return seconds / total * 1000, len(result.archive), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=2000)
    args = parser.parse_args()
    measure(16, 100)  # warm up imports and caches
    print(f"engine overhead, zero-latency LM, {args.candidates} candidates per run")
    print(f"{'batch size':>10} {'ms/candidate':>13} {'elites':>7} {'total s':>8}")
    for batch_size in (8, 16, 64):
        per, elites, total = measure(batch_size, args.candidates)
        print(f"{batch_size:>10} {per:>13.3f} {elites:>7} {total:>8.2f}")


if __name__ == "__main__":
    main()
