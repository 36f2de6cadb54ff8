"""Task quality of each local backend and compute type, against transformers float32.

    python bench/lm_quality.py [--arms ...] [--puzzles 12] [--samples 4] [--seeds 0 1 2]
                               [--search-calls 3] [--out runs/bench-lm-quality]

Each arm runs in its own process (one at a time, pinned threads) with the embedded
SmolLM2-135M-Instruct, at the same seeds:

- P3: `solve_puzzles` on a fixed, seeded sample of training puzzles (``--puzzles``, prompts
  under 3,000 characters), ``--samples`` per puzzle per seed: the solve rate and the
  empty-body rate per puzzle;
- the share of valid children in a short bin-packing search (examples/bin_packing) and a
  short symbolic-regression search (the default run), ``--search-calls`` calls of 8
  children each per seed;
- tokens per second over the whole arm, beside the quality.

An arm passes when, for each metric, the paired bootstrap 95% interval of its difference
from transformers float32 (over puzzles for P3, over children for the searches;
`openended.stats.paired_difference`) contains zero, and its empty-body rate is at most
``--max-empty``. Arms ``*-noVNNI`` emulate a CPU without AVX-512 VNNI (most laptops and
older servers) with ``ONEDNN_MAX_CPU_ISA=AVX2``: the arm ``ct2-int8-w8`` (CTranslate2's
own 8-bit weights) is where the default broke (see `openended.lm.conversion`).

Results per arm are kept in ``--out`` (delete a file to redo that arm).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bin_packing"
REFERENCE = "transformers-float32"
ARMS: dict[str, dict[str, Any]] = {
    REFERENCE: {"backend": "transformers"},
    "ct2-float32": {"backend": "ctranslate2", "compute_type": "float32"},
    "ct2-int8": {"backend": "ctranslate2", "compute_type": "int8"},
    "ct2-int8-w8": {"backend": "ctranslate2", "compute_type": "int8", "int8_levels": 127},
    "ct2-int8-noVNNI": {"backend": "ctranslate2", "compute_type": "int8", "isa": "AVX2"},
    "ct2-int8-w8-noVNNI": {
        "backend": "ctranslate2",
        "compute_type": "int8",
        "int8_levels": 127,
        "isa": "AVX2",
    },
}
"""int8_float32 is not an arm: on CPU CTranslate2 runs it exactly as int8 (the non-quantized
weights are float32 either way); int16 has no CPU kernel here (GEMM_S16: none)."""


# -- one arm, in its own process -----------------------------------------------------------


class CountingLM:
    """Counts the tokens a model generates and the seconds it takes."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.model_id = lm.model_id
        self.tokens = 0
        self.seconds = 0.0

    async def generate(self, requests: Any) -> Any:
        start = time.perf_counter()
        results = await self.lm.generate(requests)
        self.seconds += time.perf_counter() - start
        self.tokens += sum(g.completion_tokens for r in results for g in r.generations)
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lm, name)


def build_lm(arm: dict[str, Any], threads: int) -> Any:
    from openended.lm.embedded import fetch

    path = fetch(progress=print)
    if arm["backend"] == "transformers":
        from openended.lm.local import TransformersLM

        return TransformersLM(path, model_id="embedded", speculative="off", threads=threads)
    from openended.lm.ctranslate import CTranslate2LM

    options = {k: arm[k] for k in ("compute_type", "int8_levels") if k in arm}
    return CTranslate2LM(path, model_id="embedded", threads=threads, **options)


def sample_puzzles(path: Path, count: int) -> list[Any]:
    from openended.domains.puzzles import load_puzzles
    from openended.domains.puzzles.solve import solve_prompt

    puzzles = load_puzzles(path)
    random.Random(0).shuffle(puzzles)
    return [p for p in puzzles if len(solve_prompt(p)) < 3000][:count]


def p3_items(lm: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from openended.domains.puzzles import PuzzleVerifier, solve_puzzles

    puzzles = sample_puzzles(args.puzzles_file, args.puzzles)
    verifier = PuzzleVerifier()
    items: dict[str, dict[str, Any]] = {
        p.name: {"name": p.name, "samples": 0, "correct": 0, "empty": 0} for p in puzzles
    }
    for seed in args.seeds:
        report = asyncio.run(
            solve_puzzles(lm, puzzles, verifier, samples=args.samples, seed=seed, chunk=4)
        )
        for result in report.results:
            item = items[result.name]
            item["samples"] += result.samples
            item["correct"] += result.correct
            item["empty"] += result.empty
        print(f"  P3 seed {seed}: solved {report.solved}/{len(puzzles)}", flush=True)
    return list(items.values())


SEARCHES = {
    "bin packing": (
        'domain.name="program"',
        f'domain.initial="{EXAMPLE / "initial_program.py"}"',
        f'domain.evaluator="{EXAMPLE / "evaluator.py"}"',
        'domain.function="priority"',
        "search.batch_size=8",
    ),
    "symbolic regression": ("search.batch_size=8",),
}


def search_children(lm: Any, overrides: tuple[str, ...], args: argparse.Namespace) -> list[int]:
    """1 per valid child, 0 per other child, over the seeds' runs."""
    from openended import api

    valid: list[int] = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            run_dir = Path(folder) / "run"
            api.run(
                overrides=[
                    *overrides,
                    f"seed={seed}",
                    f"budget.max_lm_calls={args.search_calls}",
                ],
                lm=lm,
                run_dir=run_dir,
            )
            with sqlite3.connect(run_dir / "run.sqlite") as db:
                rows = db.execute("SELECT status FROM candidates WHERE parents != '[]'").fetchall()
        valid += [int(status == "valid") for (status,) in rows]
    return valid


def run_arm(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from openended.lm.memory import peak_rss_mib

    arm = ARMS[name]
    lm = CountingLM(build_lm(arm, args.threads))
    start = time.perf_counter()
    partial = args.out / f"{name}.p3.json"  # kept if the searches fail
    if partial.is_file():
        out: dict[str, Any] = json.loads(partial.read_text())
    else:
        out = {"arm": name, "p3": p3_items(lm, args)}
        partial.write_text(json.dumps(out))
    for search, overrides in SEARCHES.items():
        out[search] = search_children(lm, overrides, args)
        print(f"  {search}: {sum(out[search])}/{len(out[search])} valid children", flush=True)
    out["seconds"] = time.perf_counter() - start
    out["tokens_per_second"] = lm.tokens / lm.seconds if lm.seconds else 0.0
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# -- the comparison -------------------------------------------------------------------------


def compare(results: dict[str, dict[str, Any]], max_empty: float) -> bool:
    from openended.stats import paired_difference

    reference = results[REFERENCE]
    ref_items = {i["name"]: i for i in reference["p3"]}

    def per_puzzle(result: dict[str, Any], key: str) -> list[float]:
        return [i[key] / i["samples"] for i in result["p3"]]

    header = (
        f"{'arm':<20}{'solve rate':>11}{'d vs ref [95% CI]':>26}{'empty':>8}"
        f"{'d vs ref [95% CI]':>26}"
    )
    for search in SEARCHES:
        header += f"{search[:11] + ' valid':>18}{'d vs ref [95% CI]':>26}"
    header += f"{'tok/s':>8}{'x ref':>7}{'peak MiB':>9}  pass"
    print(header)
    everything = True
    for name, result in results.items():
        names = [i["name"] for i in result["p3"]]
        assert names == [i["name"] for i in reference["p3"]], "arms sampled other puzzles"
        solve = per_puzzle(result, "correct")
        empty = per_puzzle(result, "empty")
        ref_solve = [ref_items[n]["correct"] / ref_items[n]["samples"] for n in names]
        ref_empty = [ref_items[n]["empty"] / ref_items[n]["samples"] for n in names]
        d_solve = paired_difference(solve, ref_solve)
        d_empty = paired_difference(empty, ref_empty)
        empty_rate = sum(i["empty"] for i in result["p3"]) / sum(i["samples"] for i in result["p3"])
        solve_rate = sum(i["correct"] for i in result["p3"]) / sum(
            i["samples"] for i in result["p3"]
        )
        passes = not d_solve.excludes_zero and not d_empty.excludes_zero
        passes &= empty_rate <= max_empty
        line = f"{name:<20}{solve_rate:>11.3f}{d_solve!s:>26}{empty_rate:>8.3f}{d_empty!s:>26}"
        for search in SEARCHES:
            mine, ref = result[search], reference[search]
            share = sum(mine) / len(mine) if mine else 0.0
            d = share_difference(mine, ref)
            passes &= not d.excludes_zero
            line += f"{share:>18.3f}{d!s:>26}"
        speed = result["tokens_per_second"] / reference["tokens_per_second"]
        line += f"{result['tokens_per_second']:>8.0f}{speed:>7.2f}{result['peak_rss_mib']:>9.0f}"
        line += f"  {'yes' if passes else 'NO'}"
        print(line)
        everything &= passes or name.endswith("-w8-noVNNI")
    return everything


def share_difference(mine: list[int], ref: list[int], seed: int = 0) -> Any:
    """The difference of two shares of valid children, with a bootstrap 95% interval that
    resamples each arm's children independently (children are not paired across arms)."""
    import numpy as np

    from openended.stats import Interval

    rng = np.random.default_rng(seed)
    a, b = np.asarray(mine, float), np.asarray(ref, float)
    draws = rng.choice(a, (9999, a.size)).mean(1) - rng.choice(b, (9999, b.size)).mean(1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(float(a.mean() - b.mean()), float(low), float(high))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--puzzles-file", type=Path, default=Path("../shared/data/p3/train.json"))
    parser.add_argument("--puzzles", type=int, default=12)
    parser.add_argument("--samples", type=int, default=4, help="per puzzle per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--search-calls", type=int, default=3, help="LM calls (of 8 children) per search"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-empty", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lm-quality"))
    parser.add_argument("--worker", choices=list(ARMS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        result = run_arm(args.worker, args)
        (args.out / f"{args.worker}.json").write_text(json.dumps(result))
        return
    arms = [REFERENCE, *(a for a in args.arms if a != REFERENCE)]
    results = {}
    for name in arms:
        path = args.out / f"{name}.json"
        if not path.is_file():
            print(f"arm {name}", flush=True)
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            if "isa" in ARMS[name]:
                env["ONEDNN_MAX_CPU_ISA"] = ARMS[name]["isa"]
            subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--worker", name], check=True, env=env
            )
        results[name] = json.loads(path.read_text())
    print(
        f"\n{args.puzzles} training puzzles x {args.samples} samples x seeds "
        f"{' '.join(map(str, args.seeds))}; searches: {args.search_calls} calls of 8 children "
        "per seed; d = arm - transformers float32, bootstrap 95% interval"
    )
    ok = compare(results, args.max_empty)
    print("\nevery arm but the emulated pre-VNNI 8-bit one passes" if ok else "\nsome arm FAILS")


if __name__ == "__main__":
    main()
