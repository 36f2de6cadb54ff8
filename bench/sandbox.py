"""Sandbox throughput, side by side: the warm pool, a fresh `subprocess.run` of python per
evaluation, and in-process exec (unsafe). Aim: the pool >= 5x the fresh subprocess and
>= 200 evaluations/s on 2 cores.

    python bench/sandbox.py [--evaluations 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from openended.sandbox import Limits, Sandbox

TRIVIAL = "def check(x):\n    return x + 1\n"
P3 = """
def sat(s: str, target: int = 1000) -> bool:
    return s.count("o") == target and s.count("oo") == 0

def sol():
    return "ho" * 1000

def check(x):
    return sat(sol())
"""


def fresh_subprocess(program: str, n: int, workers: int) -> float:
    code = program + "\nimport json, sys\nprint(json.dumps(check(int(sys.argv[1]))))\n"

    def one(i: int) -> object:
        out = subprocess.run(
            [sys.executable, "-I", "-c", code, str(i)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(out.stdout)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - start)


def pool(program: str, n: int, workers: int) -> tuple[float, str]:
    with Sandbox(limits=Limits(wall_seconds=10), workers=workers, recycle_after=200) as box:
        asyncio.run(box.map(program, "check", [[i] for i in range(workers * 2)]))  # warm up
        start = time.perf_counter()
        results = asyncio.run(box.map(program, "check", [[i] for i in range(n)]))
        rate = n / (time.perf_counter() - start)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]
        return rate, box.isolation


def in_process(program: str, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        namespace: dict[str, object] = {}
        exec(compile(program, "<program>", "exec"), namespace)
        json.dumps(namespace["check"](i))  # type: ignore[operator]
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evaluations", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n, workers = args.evaluations, args.workers
    print(f"sandbox throughput, {n} evaluations, {workers} workers / concurrent subprocesses")
    print(
        f"{'program':>8} {'pool (isolation)':>22} {'fresh subprocess':>17} {'in-process':>11} "
        f"{'pool/subprocess':>16}"
    )
    for name, program in (("trivial", TRIVIAL), ("P3 sat", P3)):
        rate, isolation = pool(program, n, workers)
        fresh = fresh_subprocess(program, max(40, n // 10), workers)
        inproc = in_process(program, n)
        print(
            f"{name:>8} {rate:>14.0f}/s ({isolation}) {fresh:>15.0f}/s {inproc:>9.0f}/s "
            f"{rate / fresh:>15.1f}x"
        )


if __name__ == "__main__":
    main()
