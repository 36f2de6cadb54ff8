"""The Ray executor on a real local cluster (a head node and a worker node started with
`ray start` on 127.0.0.1): a search whose evaluations run as Ray tasks stores the same
candidates as a local search, even when a worker process is killed in the middle of an
evaluation."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import openended
from openended.config import ConfigError, load_config
from openended.lm.base import GenerationRequest
from openended.lm.scripted import ScriptedLM
from openended.store import RunStore

pytestmark = pytest.mark.slow  # starts a Ray cluster

ray = pytest.importorskip("ray")

INITIAL = """\
# EVOLVE-BLOCK-START
def value():
    x = 1
    return x
# EVOLVE-BLOCK-END
"""

EVALUATOR = """\
import importlib.util
import time


def evaluate(path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    time.sleep(0.4)  # long enough to be killed in the middle
    return {"score": float(module.value())}
"""

TASK_TITLE = "ray::openended.evaluate_chunk"


def _script(request: GenerationRequest, sample: int) -> str:
    k = (request.seed or 0) % 5
    if k == 0:
        return "no diff here"
    return f"\n    x = 1\n=======\n    x = {k}{sample}\n>>>>>>> REPLACE\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str) -> None:
    command = [str(Path(sys.executable).parent / "ray"), *args]
    if not Path(command[0]).exists():
        command[0] = shutil.which("ray") or "ray"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node and a worker node, one CPU each, on 127.0.0.1."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="oe-ray-", dir="/tmp")  # Ray's socket paths must be short
    address = f"127.0.0.1:{port}"
    try:
        _ray(
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        )
        _ray("start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1")
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _ray("stop", "--force")
        shutil.rmtree(temp, ignore_errors=True)


def _config(tmp_path: Path, name: str, executor: dict) -> dict:
    (tmp_path / "initial.py").write_text(INITIAL)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    return {
        "runs_dir": str(tmp_path / "runs"),
        "name": name,
        "search": {"batch_size": 6},
        "budget": {"max_evaluations": 0, "max_lm_calls": 4, "max_seconds": 0},
        "operators": {"rewrite": {"weight": 0}, "funsearch": {"weight": 0}},
        "domain": {
            "name": "program",
            "initial": str(tmp_path / "initial.py"),
            "evaluator": str(tmp_path / "evaluator.py"),
            "sandbox": {"wall_seconds": 10, "cpu_seconds": 10, "memory_mb": 512},
        },
        "executor": executor,
    }


def _stored(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [
            (c.id, c.operator, c.parents, c.genome, c.status, c.fitness, c.error)
            for c in store.candidates()
        ]


def _task_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(TASK_TITLE):
            found.append(int(entry.name))
    return found


def test_a_killed_worker_loses_nothing_and_counts_nothing_twice(
    cluster: str, tmp_path: Path
) -> None:
    local = openended.run(_config(tmp_path, "local", {}), lm=ScriptedLM(_script))
    killed: list[int] = []
    outcome: list[object] = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            outcome.append(
                openended.run(
                    _config(tmp_path, "ray", {"kind": "ray", "address": cluster, "chunk_size": 2}),
                    lm=ScriptedLM(_script),
                )
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=search, daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while not killed and thread.is_alive() and time.monotonic() < deadline:
        busy = _task_processes()
        if busy:  # the title says it is running an evaluation task right now
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])
        time.sleep(0.05)
    thread.join(timeout=300)
    assert not errors, errors
    assert killed, "no evaluation task was seen running"
    assert outcome and "LM calls" in outcome[0].outcome.stopped_by
    rows = _stored(outcome[0].run_dir)
    assert len({r[0] for r in rows}) == len(rows) == 1 + 4 * 6  # the seed and 4 batches
    assert rows == _stored(local.run_dir)  # the same candidates, statuses and scores
    assert sum(r[4] == "valid" for r in rows) >= 4  # the others: no diff, duplicates


def test_lm_calls_go_to_ray_actors_hosting_the_model(cluster: str, tmp_path: Path) -> None:
    from openended.executor.ray_backend import RayActorLM

    config = load_config(
        {"model": {"name": "embedded"}, "executor": {"kind": "ray", "address": cluster}}
    )
    lm = RayActorLM(config.model, actors=1, cpus=1, address=cluster, seed=0)
    import asyncio

    request = GenerationRequest(prompt="def add(a, b):\n", max_tokens=8, temperature=0.0, n=2)
    results = asyncio.run(lm.generate([request]))
    assert "embedded" in lm.model_id
    assert len(results[0].generations) == 2
    assert results[0].generations[0].text == results[0].generations[1].text  # greedy
    assert results[0].generations[0].completion_tokens > 0


def test_executor_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"lm_actors needs executor\.kind = 'ray'"):
        load_config({"executor": {"lm_actors": 1}})
    with pytest.raises(ConfigError, match="only a local model is hosted"):
        load_config(
            {
                "model": {"name": "http://127.0.0.1:9/v1"},
                "executor": {"kind": "ray", "lm_actors": 1},
            }
        )


def test_the_command_line_sets_the_executor() -> None:
    from openended.apps.cli import build_parser
    from openended.apps.cli.common import flag_overrides

    for command in (["run"], ["evolve", "a.py", "b.py"], ["resume", "runs/x"]):
        args = build_parser().parse_args(
            [*command, "--executor", "ray", "--ray-address", "ray://head:10001"]
        )
        config = load_config(None, flag_overrides(args))
        assert config.executor.kind == "ray"
        assert config.executor.address == "ray://head:10001"
