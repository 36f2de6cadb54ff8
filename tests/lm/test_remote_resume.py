"""A run killed while its requests are in flight on a server resumes cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import openended
from openended.store import RunStore
from tests.fault_server import FaultServer

pytestmark = pytest.mark.slow  # SIGKILLs a CLI subprocess and resumes it

REPO = Path(__file__).resolve().parents[2]


def rows(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [(c.id, c.batch, c.genome, c.status) for c in store.candidates()]


def test_sigkill_with_requests_in_flight_then_resume(tmp_path: Path) -> None:
    with FaultServer(default="slow") as server:
        server.slow_seconds = 0.5
        run_dir = tmp_path / "remote"
        command = [
            sys.executable,
            "-m",
            "openended.apps.cli",
            "run",
            "--runs-dir",
            str(tmp_path),
            "--name",
            "remote",
            "--model",
            server.url,
            "--model-name",
            "fault",
            "--no-report",
            "--set",
            "search.batch_size=4",
            "--set",
            "budget.max_evaluations=40",
            "--set",
            "budget.max_seconds=0",
            "--set",
            "domain.points=32",
        ]
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            done = (run_dir / "run.sqlite").exists() and (RunStore(run_dir).last_batch() or 0) >= 2
            in_flight = len(server.log) > server.answered
            if done and in_flight:
                break
            time.sleep(0.01)
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        before = rows(run_dir)
        server.slow_seconds = 0.0
        result = openended.resume(run_dir)
    after = rows(run_dir)
    assert after[: len(before)] == before
    assert [r[0] for r in after] == list(range(1, len(after) + 1))
    assert sum(r[3] in ("valid", "invalid") for r in after) == 40
    assert result.outcome.stopped_by == "budget: evaluations (40)"
