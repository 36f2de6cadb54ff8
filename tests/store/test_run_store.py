from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import openended
from openended.lm.scripted import ScriptedLM
from openended.store import BatchMetrics, CandidateRecord, RunStore, Status, StoreError
from tests.conftest import seeded_script

REPO = Path(__file__).resolve().parents[2]


def metrics(batch: int) -> BatchMetrics:
    return BatchMetrics(batch, 1, 0, 0, 0.0, 1, 0.1, 1.0, -1.0, 1.0, 1.0, None)


def test_round_trip_and_wal(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r", create=True) as store:
        record = CandidateRecord(
            id=1,
            batch=0,
            operator="seed",
            parents=(),
            status="valid",
            genome="m",
            fitness=-1.5,
            descriptors=(1.0, 0.0),
            metrics={"nmse": 1.5},
        )
        store.record_batch([record], metrics(0), meta={"usage": {"evaluations": 1}})
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with RunStore(tmp_path / "r") as store:
        (back,) = list(store.candidates())
        assert back == record
        assert store.get_meta("usage") == {"evaluations": 1}
        assert store.next_id() == 2 and store.last_batch() == 0


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r", create=True) as store:
        good = CandidateRecord(id=1, batch=0, operator="seed", parents=(), status="valid")
        store.record_batch([good], metrics(0))
        dup = CandidateRecord(id=1, batch=1, operator="lmx", parents=(1,), status="valid")
        with pytest.raises(sqlite3.IntegrityError):
            store.record_batch(
                [
                    CandidateRecord(id=2, batch=1, operator="lmx", parents=(1,), status="invalid"),
                    dup,
                ],
                metrics(1),
            )
        assert store.count() == 1 and store.last_batch() == 0


def test_a_pending_candidate_is_never_stored(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r", create=True) as store:
        waiting = CandidateRecord(id=1, batch=0, operator="seed", parents=(), status="pending")
        assert waiting.status is Status.PENDING
        with pytest.raises(ValueError, match=r"candidates \[1\] are still pending"):
            store.record_batch([waiting], metrics(0))
        assert store.count() == 0
    with pytest.raises(ValueError, match="status must be one of"):
        CandidateRecord(id=2, batch=0, operator="seed", parents=(), status="waiting")


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not an openended run directory"):
        RunStore(tmp_path)
    with pytest.raises(ValueError, match="status must be one of"):
        CandidateRecord(batch=0, operator="x", parents=(), status="great")


RUNNER = textwrap.dedent(
    """
    import sys
    import openended
    from openended.lm.scripted import ScriptedLM
    from tests.conftest import seeded_script

    lm = ScriptedLM(seeded_script, latency=0.02)
    if sys.argv[1] == "run":
        openended.run(eval(sys.argv[2]), lm=lm)
    else:
        openended.resume(sys.argv[2], lm=lm)
    """
)


def _snapshot(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [(c.id, c.batch, c.parents, c.genome, c.status) for c in store.candidates()]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], cwd=REPO, env=env)


def _batches(run_dir: Path) -> int:
    try:
        with RunStore(run_dir) as store:
            return store.last_batch() or 0
    except (StoreError, sqlite3.Error):
        return 0


@pytest.mark.slow  # SIGKILLs subprocesses many times
def test_sigkill_at_any_moment_loses_nothing_committed(tmp_path: Path) -> None:
    """Kill the search process with SIGKILL three times at different points; each time
    the store is intact, keeps every committed candidate, and resuming continues the
    ids. The final run equals an uninterrupted run with the same seed."""
    config = {
        "runs_dir": str(tmp_path),
        "name": "killed",
        "search": {"batch_size": 8},
        "budget": {"max_evaluations": 160, "max_seconds": 0},
        "domain": {"name": "symbolic_regression", "points": 64},
    }
    reference = openended.run({**config, "name": "reference"}, lm=ScriptedLM(seeded_script))
    run_dir = tmp_path / "killed"
    process = _start(["run", repr(config)])
    committed: list[tuple] = []
    for target_batches, extra_delay in ((2, 0.0), (6, 0.013), (11, 0.031)):
        deadline = time.time() + 120
        while _batches(run_dir) < target_batches and process.poll() is None:
            assert time.time() < deadline, "search made no progress"
            time.sleep(0.005)
        time.sleep(extra_delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        snapshot = _snapshot(run_dir)
        assert snapshot[: len(committed)] == committed  # nothing committed was lost
        assert [r[0] for r in snapshot] == list(range(1, len(snapshot) + 1))
        committed = snapshot
        process = _start(["resume", str(run_dir)])
    assert process.wait(timeout=300) == 0
    final = _snapshot(run_dir)
    assert final[: len(committed)] == committed
    assert final == _snapshot(reference.run_dir)
