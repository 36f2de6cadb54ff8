"""Run directories never hide damage, never change under a run, and never show a traceback.

One test (or a few) per finding of the run review (issue 18): damaged stores, budgets that
round-trip, one writer at a time, a full disk and a read-only folder, the order in which a
run folder is created, the write-ahead log, changed problems on resume, budgets that do not
surprise, and exit codes and signals. Each asserts that no committed candidate was lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import openended
from openended import api
from openended.apps.cli import main
from openended.apps.progress import budget_progress
from openended.run_dir import RunDir
from openended.store import RunStore
from openended.store.run_store import BatchMetrics, CandidateRecord, StoreError
from tests.fault_server import FaultServer

REPO = Path(__file__).resolve().parents[1]


def rows(run_dir: Path) -> list[tuple]:
    with RunStore(run_dir) as store:
        return [(c.id, c.batch, c.genome, c.status) for c in store.candidates()]


@pytest.fixture
def run_dir(small_config, scripted_lm) -> Path:
    return openended.run(small_config(max_evaluations=24), lm=scripted_lm).run_dir


def error_line(capsys) -> str:
    """The command's stderr: exactly one line, with no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return " ".join(err.split())


# -- 1. a damaged store is refused, never restarted --------------------------------------


def damage_truncate(db: Path) -> str:
    db.write_bytes(b"")
    return "is empty (0 bytes)"


def damage_garbage(db: Path) -> str:
    db.write_bytes(os.urandom(8192))
    return "not a readable SQLite database"


def damage_schema(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.close()
    return "schema version 99"


def damage_tables(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE candidates")
    connection.close()
    return "tables candidates are missing"


@pytest.mark.parametrize("damage", [damage_truncate, damage_garbage, damage_schema, damage_tables])
def test_a_damaged_store_is_refused_and_left_as_it_is(
    run_dir: Path, scripted_lm, capsys, damage: Callable[[Path], str]
) -> None:
    db = run_dir / RunStore.DB_NAME
    expected = damage(db)
    before = db.read_bytes()
    with pytest.raises(StoreError, match=re.escape(expected)):
        openended.resume(run_dir, lm=scripted_lm)
    assert main(["resume", str(run_dir)]) == 2
    line = error_line(capsys)
    assert str(db) in line and expected in line
    assert db.read_bytes() == before  # nothing written over it


def test_a_lost_log_costs_at_most_the_batch_in_flight(run_dir: Path, scripted_lm) -> None:
    """A store whose -wal file was deleted while its writer was alive: run.sqlite itself
    holds every batch (a checkpoint after each), so a resume continues, never restarts."""
    fresh = run_dir.parent / "fresh"
    store = RunStore(fresh, create=True)  # never closed
    for batch in range(3):
        record = CandidateRecord(
            id=batch + 1, batch=batch, operator="seed", parents=(), status="valid"
        )
        store.record_batch([record], metrics(batch))
    copy = run_dir.parent / "copy"
    copy.mkdir()
    shutil.copy(fresh / RunStore.DB_NAME, copy / RunStore.DB_NAME)  # without run.sqlite-wal
    assert [r[0] for r in rows(copy)] == [1, 2, 3]
    store.close()


def metrics(batch: int) -> BatchMetrics:
    return BatchMetrics(batch, 1, 1, 1, 0.1, 1, 0.1, 1.0, 1.0, 1.0, 1.0, None)


# -- 2. budgets round-trip (every field: tests/test_config.py) ---------------------------


def test_a_budget_turned_off_stays_off_on_resume(small_config, scripted_lm) -> None:
    config = small_config(max_evaluations=16, max_seconds=0)
    first = openended.run(config, lm=scripted_lm)
    saved = (first.run_dir / RunStore.CONFIG_NAME).read_text()
    assert "max_seconds = 0" in saved and "max_lm_calls = 0" in saved
    before = rows(first.run_dir)
    again = openended.resume(first.run_dir, overrides=["budget.max_evaluations=40"], lm=scripted_lm)
    assert again.outcome.stopped_by == "budget: evaluations (40)"
    assert RunDir(first.run_dir).config().budget.active() == {"evaluations": 40}
    assert rows(first.run_dir)[: len(before)] == before


# -- 3. one writer at a time -------------------------------------------------------------


@pytest.mark.slow  # a CLI subprocess
def test_a_second_writer_is_refused_naming_the_first(run_dir: Path, scripted_lm, capsys) -> None:
    before = rows(run_dir)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from openended.store.lock import RunLock\n"
            "lock = RunLock(sys.argv[1]).__enter__(); print('held', flush=True); sys.stdin.read()",
            str(run_dir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(
            StoreError, match=rf"in use by another openended process \(pid {holder.pid}\)"
        ):
            openended.resume(run_dir, overrides=["budget.max_evaluations=40"], lm=scripted_lm)
        assert main(["resume", str(run_dir), "--set", "budget.max_evaluations=40"]) == 2
        assert f"pid {holder.pid}" in error_line(capsys)
    finally:
        holder.communicate("")
    assert rows(run_dir) == before
    openended.resume(run_dir, overrides=["budget.max_evaluations=40"], lm=scripted_lm)
    assert len(rows(run_dir)) > len(before)  # free again once the holder is gone


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "openended.apps.cli", *args]


@pytest.mark.slow
def test_two_resumes_at_once_one_runs_the_other_is_refused(tmp_path: Path) -> None:
    with FaultServer(default="slow") as server:
        server.slow_seconds = 0.2
        common = ["--model", server.url, "--model-name", "fault", "--no-report"]
        first = subprocess.run(
            cli(
                "run",
                "--runs-dir",
                str(tmp_path),
                "--name",
                "r",
                *common,
                "--set",
                "budget.max_evaluations=12",
                "--set",
                "search.batch_size=4",
                "--set",
                "domain.points=32",
            ),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert first.returncode == 0, first.stderr
        run_dir = tmp_path / "r"
        command = cli("resume", str(run_dir), *common, "--set", "budget.max_evaluations=40")
        processes = [
            subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=300) for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2], outputs
    refused = next(err for (_, err), p in zip(outputs, processes, strict=True) if p.returncode == 2)
    assert "in use by another openended process" in refused and "Traceback" not in refused
    ids = [r[0] for r in rows(run_dir)]
    assert ids == list(range(1, len(ids) + 1))  # no gap, no duplicate
    with RunStore(run_dir) as store:
        assert store.get_meta("usage")["evaluations"] == 40


# -- 4. a full disk and a read-only run folder --------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 384 KiB (root only; skipped where it cannot be mounted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def long_completions(request, sample: int) -> str:
    from tests.conftest import seeded_script

    return seeded_script(request, sample) + "  " + "#" * 3000  # fills a disk quickly


def test_a_full_disk_is_one_line_and_keeps_what_was_committed(
    tiny_disk: Path, small_config, capsys
) -> None:
    from openended.lm.scripted import ScriptedLM

    config = small_config(max_evaluations=100_000)
    config["runs_dir"] = str(tiny_disk)
    with pytest.raises(StoreError, match="disk is full") as info:
        openended.run(config, lm=ScriptedLM(long_completions))
    run_dir = tiny_disk / "test"
    assert str(run_dir / RunStore.DB_NAME) in str(info.value)
    kept = rows(run_dir)
    assert kept and [r[0] for r in kept] == list(range(1, len(kept) + 1))
    assert main(["resume", str(run_dir), "--model", "http://127.0.0.1:9/v1"]) == 2
    line = error_line(capsys)
    assert str(run_dir) in line
    assert rows(run_dir) == kept


def test_a_failed_write_is_a_named_store_error(run_dir: Path, scripted_lm, monkeypatch) -> None:
    """Where no tmpfs can be mounted: the same path, with SQLite's disk-full error patched in."""
    before = rows(run_dir)

    def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(RunStore, "_write_batch", full)
    with pytest.raises(StoreError, match=r"run\.sqlite: could not write: the disk is full"):
        openended.resume(run_dir, overrides=["budget.max_evaluations=48"], lm=scripted_lm)
    monkeypatch.undo()
    assert rows(run_dir) == before


def test_a_read_only_run_folder_is_one_line_naming_the_file(
    tiny_disk: Path, small_config, scripted_lm, capsys
) -> None:
    config = small_config(max_evaluations=16)
    config["runs_dir"] = str(tiny_disk)
    run_dir = openended.run(config, lm=scripted_lm).run_dir
    before = rows(run_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    for command, named in (
        (["resume", str(run_dir), "--set", "budget.max_evaluations=40"], ".lock"),
        (["report", str(run_dir)], str(run_dir)),
        (["export", str(run_dir)], str(run_dir)),
    ):
        assert main(command) == 2, command
        line = error_line(capsys)
        assert named in line and "ead-only" in line, line
    assert rows(run_dir) == before


# -- 5. the order of creation -------------------------------------------------------------


def test_a_run_killed_before_its_store_was_made_is_resumed(
    small_config, scripted_lm, monkeypatch, capsys
) -> None:
    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if the process died creating run.sqlite

    config = small_config(max_evaluations=16)
    with monkeypatch.context() as patched:
        patched.setattr(RunStore, "__init__", killed)
        with pytest.raises(KeyboardInterrupt):
            openended.run(config, lm=scripted_lm)
    run_dir = Path(config["runs_dir"]) / config["name"]
    assert (run_dir / RunStore.CONFIG_NAME).is_file()
    assert not (run_dir / RunStore.DB_NAME).exists()
    assert main(["run", "--runs-dir", config["runs_dir"], "--name", config["name"]]) == 2
    assert "already holds a run; continue it with `openended resume" in error_line(capsys)
    result = openended.resume(run_dir, lm=scripted_lm)  # both say: resume it
    assert result.outcome.ok and result.outcome.metrics.evaluations == 16


def test_a_store_without_its_config_says_the_same_to_run_and_resume(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "old"
    RunStore(run_dir, create=True).close()
    assert main(["resume", str(run_dir)]) == 2
    resume_line = error_line(capsys)
    assert main(["run", "--runs-dir", str(tmp_path), "--name", "old"]) == 2
    run_line = error_line(capsys)
    for line in (resume_line, run_line):
        assert "holds a run store but no config.toml" in line


# -- 6. run.sqlite alone holds the run ----------------------------------------------------


def test_the_store_file_alone_holds_a_finished_run(run_dir: Path) -> None:
    wal = run_dir / (RunStore.DB_NAME + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    alone = run_dir.parent / "alone"
    alone.mkdir()
    shutil.copy(run_dir / RunStore.DB_NAME, alone / RunStore.DB_NAME)
    assert [r[0] for r in rows(alone)] == [r[0] for r in rows(run_dir)]


def test_the_log_is_checkpointed_during_a_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "live", create=True)
    for batch in range(5):
        record = CandidateRecord(
            id=batch + 1, batch=batch, operator="seed", parents=(), status="valid"
        )
        store.record_batch([record], metrics(batch))
        alone = tmp_path / f"alone-{batch}"
        alone.mkdir()
        shutil.copy(tmp_path / "live" / RunStore.DB_NAME, alone / RunStore.DB_NAME)
        assert len(rows(alone)) == batch + 1  # the main file alone, after every batch
    store.close()


# -- 7. a resume keeps the problem --------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ('domain.target="I.12.4"', "domain.target"),
        ("seed=5", "seed"),
        ('archive.kind="cvt"', "archive.kind"),
        ("search.batch_size=3", "search.batch_size"),
    ],
)
def test_resume_refuses_to_change_the_problem(
    run_dir: Path, scripted_lm, capsys, override: str, key: str
) -> None:
    config_text = (run_dir / RunStore.CONFIG_NAME).read_text()
    before = rows(run_dir)
    with pytest.raises(StoreError, match=f"cannot change {key}"):
        openended.resume(run_dir, overrides=[override, "budget.max_evaluations=40"], lm=scripted_lm)
    assert main(["resume", str(run_dir), "--set", override]) == 2
    assert f"cannot change {key}" in error_line(capsys)
    assert (run_dir / RunStore.CONFIG_NAME).read_text() == config_text
    assert rows(run_dir) == before


def test_budget_model_and_executor_may_change(run_dir: Path, scripted_lm) -> None:
    result = openended.resume(
        run_dir,
        overrides=["budget.max_evaluations=40", "model.max_batch_size=4", "executor.chunk_size=2"],
        lm=scripted_lm,
    )
    assert result.outcome.ok and result.outcome.metrics.evaluations == 40


def test_fork_continues_a_copy_with_a_changed_problem(run_dir: Path, scripted_lm) -> None:
    before = rows(run_dir)
    result = openended.resume(
        run_dir,
        overrides=['domain.target="I.12.4"', "budget.max_evaluations=40"],
        lm=scripted_lm,
        fork="forked",
    )
    fork = run_dir.parent / "forked"
    assert result.run_dir == fork
    assert RunDir(fork).config().domain["target"] == "I.12.4"
    assert rows(fork)[: len(before)] == before and result.outcome.metrics.evaluations == 40
    assert rows(run_dir) == before  # the original is untouched
    assert "target" not in RunDir(run_dir).config().domain


# -- 8. budgets that do not surprise ------------------------------------------------------


def test_the_budget_you_set_is_the_one_that_stops_the_run_and_is_shown(
    small_config, scripted_lm
) -> None:
    config = small_config()
    config["budget"] = {"max_evaluations": 60}
    result = openended.run(config, lm=scripted_lm)
    assert result.outcome.stopped_by == "budget: evaluations (60)"
    assert result.outcome.metrics.evaluations == 60
    assert budget_progress(result.config.budget, result.outcome.metrics) == (
        1.0,
        "60/60 evaluations",
    )
    with RunStore(result.run_dir) as store:
        assert store.get_meta("sessions")[-1]["stopped_by"] == "budget: evaluations (60)"
    lm_calls = openended.load_config(None, ["budget.max_lm_calls=2"]).budget
    assert budget_progress(lm_calls, None) == (0.0, "0/2 LM calls")


# -- 9. exit codes and signals ------------------------------------------------------------


class Watched:
    """A CLI process whose stderr lines are collected with their arrival times."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in self.lines:
                if text in line:
                    return at
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not printed; got {self.lines}")

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def committed(run_dir: Path) -> int:
    if not (run_dir / RunStore.DB_NAME).exists():
        return -1
    with RunStore(run_dir) as store:
        return store.last_batch() or -1


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def server_run(tmp_path: Path, server: FaultServer, *extra: str) -> list[str]:
    return cli(
        "run",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "sig",
        "--model",
        server.url,
        "--model-name",
        "fault",
        "--no-report",
        "--set",
        "search.batch_size=4",
        "--set",
        "budget.max_evaluations=400",
        "--set",
        "domain.points=32",
        *extra,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sent", "name", "code"), [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)]
)
def test_an_interrupt_is_acknowledged_at_once_and_finishes_the_batch(
    tmp_path: Path, sent: int, name: str, code: int
) -> None:
    with FaultServer(default="slow") as server:
        server.slow_seconds = 1.5
        watched = Watched(server_run(tmp_path, server))
        run_dir = tmp_path / "sig"
        wait_until(lambda: committed(run_dir) >= 1, 120)
        sent_at = time.monotonic()
        watched.process.send_signal(sent)
        said_at = watched.wait_for(f"{name}: finishing the batches in flight", 5)
        assert said_at - sent_at < 1.0  # acknowledged at once, not after the batch
        assert watched.process.wait(30) == code
    watched.thread.join(5)
    out = watched.text()
    assert f"continue with: openended resume {run_dir}" in out and "Traceback" not in out
    ids = [r[0] for r in rows(run_dir)]
    assert ids == list(range(1, len(ids) + 1))
    with RunStore(run_dir) as store:
        assert store.get_meta("sessions")[-1]["stopped_by"] == f"interrupted ({name})"


@pytest.mark.slow
def test_a_second_ctrl_c_stops_within_seconds(tmp_path: Path) -> None:
    with FaultServer(default="slow") as server:
        server.slow_seconds = 0.5
        watched = Watched(server_run(tmp_path, server))
        run_dir = tmp_path / "sig"
        wait_until(lambda: committed(run_dir) >= 1, 120)
        server.slow_seconds = 60  # the batch in flight would take a minute
        time.sleep(0.6)
        watched.process.send_signal(signal.SIGINT)
        watched.wait_for("Ctrl-C: finishing", 5)
        second = time.monotonic()
        watched.process.send_signal(signal.SIGINT)
        assert watched.process.wait(15) == 130
        assert time.monotonic() - second < 5
    watched.thread.join(5)
    assert f"openended resume {run_dir}" in watched.text()
    ids = [r[0] for r in rows(run_dir)]
    assert ids == list(range(1, len(ids) + 1))


@pytest.mark.slow
def test_a_run_stopped_by_a_dead_model_server_exits_non_zero(tmp_path: Path) -> None:
    done = subprocess.run(
        cli(
            "run",
            "--runs-dir",
            str(tmp_path),
            "--name",
            "dead",
            "--model",
            "http://127.0.0.1:9/v1",
            "--model-name",
            "x",
            "--no-report",
            "--set",
            "model.max_retries=0",
            "--set",
            "search.max_failed_batches=2",
            "--set",
            "domain.points=32",
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    assert "the language model failed" in done.stderr
    assert f"continue with: openended resume {tmp_path / 'dead'}" in done.stderr


# -- the rest of the review ---------------------------------------------------------------


def test_run_works_inside_a_running_event_loop(small_config, scripted_lm) -> None:
    """A notebook: `openended.run` called where an event loop is already running."""

    async def notebook_cell() -> api.RunResult:
        return openended.run(small_config(max_evaluations=16), lm=scripted_lm)

    result = asyncio.run(notebook_cell())
    assert result.outcome.ok and result.outcome.metrics.evaluations == 16


def test_solve_refuses_k_above_samples(tmp_path: Path, capsys) -> None:
    puzzles = tmp_path / "p.json"
    puzzles.write_text(
        json.dumps([{"name": "a", "sat": "def sat(x: int):\n    return x == 1", "ans_type": "int"}])
    )
    assert main(["solve", str(puzzles), "--samples", "1", "--k", "5"]) == 2
    line = error_line(capsys)
    assert "--k 5" in line and "--samples is 1" in line


def test_improve_with_a_missing_input_creates_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "improve-out"
    assert main(["improve", "--puzzles", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "missing.json" in error_line(capsys)
    assert not out.exists()
