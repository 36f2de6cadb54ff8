"""Peer harness: OpenEvolve and openended on the same task, the same OpenAI-compatible server
(default: the embedded model through `openended serve-model`), the same number of LM
requests, several seeds. Prints best score, valid-offspring rate, LM requests and wall time
(mean ± std).

    python bench/peers.py [--task function_minimization] [--requests 24] [--seeds 0 1 2]

OpenEvolve is pinned (`--openevolve-version`, default 0.4.0) and installed on first use into
its own virtual environment under the user cache folder, so its dependencies never touch
this one. An LM *request* is one completion: OpenEvolve makes one per iteration; openended
batches `--batch-size` requests into one call, so it gets requests / batch-size calls.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from openended.lm.embedded import cache_root

REPO = Path(__file__).resolve().parents[1]

OPENEVOLVE_DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from openevolve import OpenEvolve
    from openevolve.config import load_config

    initial, evaluator, config, output = sys.argv[1:5]
    start = time.time()
    evolve = OpenEvolve(initial_program_path=initial, evaluation_file=evaluator,
                        config=load_config(config), output_dir=output)
    best = asyncio.run(evolve.run())
    programs = list(evolve.database.programs.values())
    children = [p for p in programs if getattr(p, "parent_id", None)]
    valid = [p for p in children if "error" not in p.metrics
             and p.metrics.get("combined_score", 0) > 0]
    scores = [p.metrics.get("combined_score", float("-inf")) for p in programs
              if "error" not in p.metrics]
    print("RESULT " + json.dumps({"best": max(scores), "children": len(children),
                                  "valid": len(valid), "seconds": time.time() - start}))
    """
)

EVALUATOR_WRAPPER = textwrap.dedent(
    '''
    """OpenEvolve wants `combined_score`; this wraps the task's evaluator."""
    import importlib.util
    _spec = importlib.util.spec_from_file_location("task_evaluator", {path!r})
    _task = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_task)

    def evaluate(program_path):
        try:
            result = _task.evaluate(program_path)
        except Exception as exc:  # noqa: BLE001
            return {{"combined_score": 0.0, "error": str(exc)}}
        if "error" in result:
            return {{"combined_score": 0.0, "error": str(result["error"])}}
        return {{"combined_score": float(result["score"]),
                **{{k: v for k, v in result.items() if k != "score"}}}}
    '''
)

OPENEVOLVE_CONFIG = textwrap.dedent(
    """
    max_iterations: {iterations}
    checkpoint_interval: 1000
    log_level: "WARNING"
    random_seed: {seed}
    diff_based_evolution: true
    llm:
      api_base: "{url}"
      api_key: "none"
      models:
        - name: "{model}"
          weight: 1.0
      temperature: 0.9
      top_p: 0.95
      max_tokens: {max_tokens}
      timeout: 300
      retries: 2
    evaluator:
      timeout: 30
      cascade_evaluation: false
      parallel_evaluations: 1
    database:
      random_seed: {seed}
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def openevolve_python(version: str) -> Path:
    venv = cache_root() / "peers" / f"openevolve-{version}"
    python = venv / "bin" / "python"
    if (
        not python.exists()
        or subprocess.run([str(python), "-c", "import openevolve"], capture_output=True).returncode
    ):
        print(f"installing openevolve=={version} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"openevolve=={version}"], check=True
        )
    return python


def start_server() -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "openended.apps.cli", "serve-model", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            health = httpx.get(f"{url}/health", timeout=1).json()
            return process, f"{url}/v1", health["model"]
        except (httpx.HTTPError, ValueError):
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("serve-model did not start")


def run_openended(
    task: Path,
    url: str,
    model: str,
    seed: int,
    requests: int,
    batch: int,
    max_tokens: int,
    work: Path,
) -> dict:
    start = time.time()
    name = f"openended-{seed}"
    command = [
        sys.executable,
        "-m",
        "openended.apps.cli",
        "evolve",
        str(task / "initial_program.py"),
        str(task / "evaluator.py"),
        "--runs-dir",
        str(work),
        "--name",
        name,
        "--seed",
        str(seed),
        "--model",
        url,
        "--model-name",
        model,
        "--no-report",
        "--set",
        f"search.batch_size={batch}",
        "--set",
        f"budget.max_lm_calls={requests // batch}",
        "--set",
        "budget.max_evaluations=0",
        "--set",
        "budget.max_seconds=0",
        "--set",
        "domain.sandbox.wall_seconds=30",
    ]
    for op in ("diff", "rewrite", "funsearch"):
        command += ["--set", f"operators.{op}.max_tokens={max_tokens}"]
    subprocess.run(command, check=True, capture_output=True)
    with sqlite3.connect(work / name / "run.sqlite") as db:
        rows = db.execute("SELECT operator, status, fitness FROM candidates").fetchall()
    children = [r for r in rows if r[0] != "seed"]
    return {
        "best": max(r[2] for r in rows if r[1] == "valid"),
        "children": len(children),
        "valid": sum(r[1] == "valid" for r in children),
        "seconds": time.time() - start,
    }


def run_openevolve(
    python: Path,
    task: Path,
    url: str,
    model: str,
    seed: int,
    requests: int,
    max_tokens: int,
    work: Path,
) -> dict:
    folder = work / f"openevolve-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluator.py").write_text(EVALUATOR_WRAPPER.format(path=str(task / "evaluator.py")))
    (folder / "config.yaml").write_text(
        OPENEVOLVE_CONFIG.format(
            iterations=requests, seed=seed, url=url, model=model, max_tokens=max_tokens
        )
    )
    (folder / "driver.py").write_text(OPENEVOLVE_DRIVER)
    out = subprocess.run(
        [
            str(python),
            str(folder / "driver.py"),
            str(task / "initial_program.py"),
            str(folder / "evaluator.py"),
            str(folder / "config.yaml"),
            str(folder / "output"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENAI_API_KEY": "none"},
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"OpenEvolve failed (exit {out.returncode}): {out.stderr[-2000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    result["children"] = requests  # one LM request per iteration, parseable or not
    return result


def summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4g} ± {std:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="function_minimization")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--openevolve-version", default="0.4.0")
    args = parser.parse_args()
    task = REPO / "examples" / args.task
    python = openevolve_python(args.openevolve_version)
    server, url, model = start_server()
    results: dict[str, list[dict]] = {"openended": [], f"OpenEvolve {args.openevolve_version}": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for seed in args.seeds:
                results["openended"].append(
                    run_openended(
                        task,
                        url,
                        model,
                        seed,
                        args.requests,
                        args.batch_size,
                        args.max_tokens,
                        work,
                    )
                )
                results[f"OpenEvolve {args.openevolve_version}"].append(
                    run_openevolve(
                        python, task, url, model, seed, args.requests, args.max_tokens, work
                    )
                )
                print(
                    f"seed {seed}: " + json.dumps({k: v[-1] for k, v in results.items()}),
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"\ntask {args.task}, model {model} via serve-model, {args.requests} LM requests, "
        f"seeds {args.seeds}"
    )
    print(f"{'system':<20} {'best score':>16} {'valid offspring':>16} {'wall time s':>14}")
    for system, runs in results.items():
        rates = [r["valid"] / r["children"] if r["children"] else 0.0 for r in runs]
        print(
            f"{system:<20} {summary([r['best'] for r in runs]):>16} "
            f"{summary(rates):>16} {summary([r['seconds'] for r in runs]):>14}"
        )


if __name__ == "__main__":
    main()
