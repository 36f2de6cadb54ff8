"""Evaluations/s in this process (the domain's sandbox pool, 2 workers) against Ray
tasks on a local cluster of two nodes with one CPU each (`ray start` on 127.0.0.1),
side by side, for a cheap and a CPU-heavy user evaluator (program evolution domain).

    python bench/ray_executor.py [--genomes 64] [--batch 16]

Needs Ray (`pip install 'openended[ray]'`). Starts and stops its own cluster
(`ray stop --force` at the end stops every Ray process of this user).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openended.api import build_domain
from openended.config import load_config
from openended.executor import LocalEvaluator
from openended.executor.ray_backend import RayEvaluator

INITIAL = "# EVOLVE-BLOCK-START\ndef value():\n    return 1\n# EVOLVE-BLOCK-END\n"
EVALUATORS = {
    "cheap": "def evaluate(path):\n    return {'score': 1.0}\n",
    "cpu ~0.2 s": (
        "def evaluate(path):\n"
        "    total = 0\n"
        "    for i in range(3_000_000):\n"
        "        total += i % 7\n"
        "    return {'score': float(total % 10)}\n"
    ),
}


def ray_command(*args: str) -> None:
    ray = Path(sys.executable).parent / "ray"
    command = [str(ray) if ray.exists() else (shutil.which("ray") or "ray"), *args]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=180)


def rate(evaluator: object, genomes: list[str], batch: int) -> float:
    """Evaluations/s after a warm-up batch; every evaluation must be valid."""
    out: list = []

    async def go() -> None:
        for i in range(0, len(genomes), batch):
            out.extend(await evaluator.evaluate(genomes[i : i + batch]))  # type: ignore[attr-defined]

    asyncio.run(evaluator.evaluate(genomes[:batch]))  # type: ignore[attr-defined]  # warm up
    start = time.perf_counter()
    asyncio.run(go())
    seconds = time.perf_counter() - start
    invalid = [e.feedback for e in out if not e.valid]
    if invalid:
        raise SystemExit(f"{len(invalid)} invalid evaluations, e.g. {invalid[0]}")
    return len(genomes) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=4)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="oe-ray-", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="oe-bench-"))
    address = f"127.0.0.1:{port}"
    try:
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1"]
        ray_command(
            "start",
            "--head",
            f"--port={port}",
            *common,
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        )
        ray_command("start", f"--address={address}", *common)
        (work / "initial.py").write_text(INITIAL)
        genomes = [INITIAL.replace("return 1", f"return {k}") for k in range(args.genomes)]
        print(
            f"{args.genomes} evaluations in batches of {args.batch}; Ray: 2 nodes x 1 CPU,"
            f" {args.chunk_size} genomes per task\n"
        )
        print(f"{'evaluator':>12} {'local eval/s':>13} {'ray eval/s':>11} {'ray/local':>10}")
        for label, source in EVALUATORS.items():
            (work / "evaluator.py").write_text(source)
            config = load_config(
                {
                    "domain": {
                        "name": "program",
                        "initial": str(work / "initial.py"),
                        "evaluator": str(work / "evaluator.py"),
                        "workers": 2,
                    },
                    "executor": {"kind": "ray", "address": address, "chunk_size": args.chunk_size},
                }
            )
            domain = build_domain(config)
            try:
                local = rate(LocalEvaluator(domain), genomes, args.batch)
                remote = rate(RayEvaluator(config, domain), genomes, args.batch)
            finally:
                domain.close()  # type: ignore[attr-defined]
            print(f"{label:>12} {local:>13.1f} {remote:>11.1f} {remote / local:>9.2f}x", flush=True)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        ray_command("stop", "--force")
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
