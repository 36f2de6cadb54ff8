"""Sandbox throughput, side by side in one run: the warm pool (every program in a fresh
forked child of a warm fork server), a fresh `python -I -c` per evaluation, and in-process
exec (unsafe, for scale). Every evaluation runs a different program text, as in a search.

Modes: "one at a time" awaits each result before sending the next, with the default pool
(2 workers) and with a single worker; "2 at a time" keeps two evaluations in flight (as the
search engine does with 2 workers), against two fresh processes at a time.

Aim (issue 17): the pool at least 30x a fresh `python -I -c`, one evaluation at a time.

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

from openended.sandbox import Limits, Sandbox, bwrap_path

TRIVIAL = "def check(x):\n    return x + {i}\n"
P3 = """
def sat(s: str, target: int = 1000) -> bool:
    return s.count("o") == target and s.count("oo") == 0

def sol():
    return "ho" * (1000 + {i} - {i})

def check(x):
    return sat(sol())
"""


def programs(template: str, n: int) -> list[str]:
    return [template.replace("{i}", str(i)) for i in range(n)]


def fresh_subprocess(template: str, n: int, workers: int) -> float:
    """A new `python -I -c` per evaluation, `workers` at a time."""

    def one(i: int) -> object:
        code = template.replace("{i}", str(i))
        code += "\nimport json, sys\nprint(json.dumps(check(int(sys.argv[1]))))\n"
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


def pool(template: str, n: int, isolation: str, workers: int, in_flight: int) -> float:
    texts = programs(template, n)
    with Sandbox(limits=Limits(wall_seconds=10), workers=workers, isolation=isolation) as box:  # type: ignore[arg-type]
        for text in texts[:20]:  # warm up
            box.run_sync(text, "check", [1])
        start = time.perf_counter()
        if in_flight == 1:
            results = [box.run_sync(text, "check", [i]) for i, text in enumerate(texts)]
        else:

            async def run_all() -> list:
                return await asyncio.gather(
                    *(box.run(text, "check", [i]) for i, text in enumerate(texts))
                )

            results = asyncio.run(run_all())
        rate = n / (time.perf_counter() - start)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:1]
        return rate


def in_process(template: str, n: int) -> float:
    texts = programs(template, n)
    start = time.perf_counter()
    for i, text in enumerate(texts):
        namespace: dict[str, object] = {}
        exec(compile(text, "<program>", "exec"), namespace)
        json.dumps(namespace["check"](i))  # type: ignore[operator]
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evaluations", type=int, default=400)
    args = parser.parse_args()
    n = args.evaluations
    isolations = ["bwrap", "rlimits"] if bwrap_path() else ["rlimits"]
    print(f"sandbox throughput, {n} evaluations of distinct programs (evaluations/s)")
    header = f"{'program':>8} {'mode':>24} {'fresh python -I -c':>19} {'in-process':>11}"
    for isolation in isolations:
        header += f" {'pool ' + isolation:>13} {'ratio':>6}"
    print(header)
    modes = (
        ("one at a time, 2 workers", 2, 1),
        ("one at a time, 1 worker", 1, 1),
        ("2 at a time, 2 workers", 2, 2),
    )
    for name, template in (("trivial", TRIVIAL), ("P3 sat", P3)):
        fresh_rates = {k: fresh_subprocess(template, max(40, n // 10), k) for k in (1, 2)}
        inproc = in_process(template, n)
        for mode, workers, in_flight in modes:
            fresh = fresh_rates[in_flight]
            line = f"{name:>8} {mode:>24} {fresh:>17.1f}/s {inproc:>9.0f}/s"
            for isolation in isolations:
                rate = pool(template, n, isolation, workers, in_flight)
                line += f" {rate:>11.0f}/s {rate / fresh:>5.1f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
