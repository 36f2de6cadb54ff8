"""The run directory: SQLite (WAL) holding every candidate, the config and per-batch metrics.

Each batch is written in one transaction, so a SIGKILL at any moment leaves either the
whole batch or none of it; with WAL and ``synchronous=NORMAL`` a committed transaction
survives the death of the process.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from openended.errors import UserError
from openended.sqlite import connect_immutable, connect_wal

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL,
    operator TEXT NOT NULL,
    parents TEXT NOT NULL,
    genome TEXT,
    completion TEXT,
    prompt TEXT,
    status TEXT NOT NULL,
    error TEXT,
    fitness REAL,
    descriptors TEXT,
    metrics TEXT,
    added INTEGER NOT NULL DEFAULT 0,
    t_generate REAL,
    t_evaluate REAL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    lm_faults TEXT,
    island INTEGER,
    created_at REAL NOT NULL,
    proposed TEXT,
    details TEXT
);
CREATE INDEX IF NOT EXISTS candidates_batch ON candidates (batch);
CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY,
    evaluations INTEGER NOT NULL,
    lm_calls INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    elapsed REAL NOT NULL,
    num_elites INTEGER NOT NULL,
    coverage REAL NOT NULL,
    qd_score REAL NOT NULL,
    best_fitness REAL,
    valid_rate REAL NOT NULL,
    batch_valid_rate REAL NOT NULL,
    tokens_per_second REAL,
    created_at REAL NOT NULL
);
"""


class Status(StrEnum):
    """What became of a candidate. Every status but `PENDING` is final and stored;
    `PENDING` (parsed, waiting for its evaluation) lives only inside a batch in flight."""

    VALID = "valid"
    INVALID = "invalid"
    """Evaluated and rejected (the error says why)."""
    PARSE_ERROR = "parse_error"
    SEARCH_NOT_FOUND = "search_not_found"
    """A diff whose SEARCH text is not in the parent."""
    DUPLICATE = "duplicate"
    LM_ERROR = "lm_error"
    PENDING = "pending"


STATUSES = tuple(s.value for s in Status if s is not Status.PENDING)
"""The statuses a stored candidate may have."""


@dataclass
class CandidateRecord:
    """One candidate as stored. `id` is assigned by the store when recorded."""

    batch: int
    operator: str
    parents: tuple[int, ...]
    status: Status
    genome: str | None = None
    completion: str | None = None
    prompt: str | None = None
    error: str | None = None
    fitness: float | None = None
    descriptors: tuple[float, ...] | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    added: bool = False
    t_generate: float | None = None
    t_evaluate: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lm_faults: tuple[str, ...] = ()
    island: int | None = None
    id: int | None = None
    proposed: str | None = None
    """What the model proposed, when the domain stored another genome (fitted constants,
    tuned literals)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """What the domain reports beyond numbers (fitted constants, evaluations spent)."""

    def __post_init__(self) -> None:
        if self.status not in set(Status):
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        self.status = Status(self.status)


def best_parent(
    record: CandidateRecord, fitness: Mapping[int | None, float | None]
) -> tuple[int, float] | None:
    """The parent of `record` with the highest fitness (by `fitness`, the valid
    candidates' fitness by id: `valid_fitness`) and that fitness; None when no parent
    has one."""
    scored = [(f, p) for p in record.parents if (f := fitness.get(p)) is not None]
    if not scored:
        return None
    value, parent = max(scored)
    return parent, value


def beats_its_parent(record: CandidateRecord, fitness: Mapping[int | None, float | None]) -> bool:
    """`record` is valid and fitter than its best parent (by `fitness`: `valid_fitness`)."""
    best = best_parent(record, fitness)
    return (
        record.status == Status.VALID
        and record.fitness is not None
        and best is not None
        and record.fitness > best[1]
    )


def valid_fitness(records: Iterable[CandidateRecord]) -> dict[int | None, float | None]:
    """The fitness of each valid candidate, by id (what `best_parent` compares)."""
    return {r.id: r.fitness for r in records if r.status == Status.VALID}


@dataclass(frozen=True)
class BatchMetrics:
    """Search metrics after a batch was inserted (totals over the whole run)."""

    batch: int
    evaluations: int
    lm_calls: int
    tokens: int
    elapsed: float
    num_elites: int
    coverage: float
    qd_score: float
    best_fitness: float | None
    valid_rate: float
    batch_valid_rate: float
    tokens_per_second: float | None


class StoreError(UserError, RuntimeError):
    """The run directory is missing, unreadable or not an openended run."""


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class RunStore:
    """Read and write a run directory (``run.sqlite`` and ``config.toml``).

    Opening an existing store never changes it: the file must be a SQLite database holding
    this schema at `SCHEMA_VERSION`, or `StoreError` says what is wrong (an empty or
    truncated file, tables lost with a deleted ``-wal`` file, another schema). Writes that
    fail for want of space or permission are a `StoreError` naming the file; committed
    batches are untouched. The store is created whole (schema and version) under a temporary
    name and renamed into place, and the write-ahead log is checkpointed into ``run.sqlite``
    after every batch and when the store is closed: the main file alone holds the run, and
    a lost ``-wal`` file costs at most the last batch (which a resume regenerates exactly).
    """

    DB_NAME = "run.sqlite"
    CONFIG_NAME = "config.toml"
    CHECKPOINT_BATCHES = 1

    def __init__(self, run_dir: Path, *, create: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / self.DB_NAME
        if create:
            if self.path.exists():
                raise StoreError(f"{self.path} already exists")
            self.run_dir.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_file():
            raise StoreError(
                f"{self.run_dir} is not an openended run directory (no {self.DB_NAME})"
            )
        read_only = not create and not os.access(self.run_dir, os.W_OK)
        if not create:
            check_store(self.path, read_only=read_only)
        self._wrote = create
        try:
            if create:
                _create_atomically(self.path)
            self.db = connect_immutable(self.path) if read_only else connect_wal(self.path)
            if not create and not read_only:
                self._migrate()
        except sqlite3.Error as exc:
            raise self._failed(exc, "open") from None
        self._batches_since_checkpoint = 0

    def _migrate(self) -> None:
        """Bring an older store to `SCHEMA_VERSION` (one transaction per step)."""
        version = self.get_meta("schema_version")
        while version in MIGRATIONS:
            with self._transaction():
                for statement in MIGRATIONS[version]:
                    self.db.execute(statement)
                version += 1
                self.set_meta("schema_version", version)

    def close(self) -> None:
        if self._wrote:  # a writer folds its log into run.sqlite (readers leave it be)
            with contextlib.suppress(sqlite3.Error):  # the log still holds what it holds
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failed(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """A `StoreError` that names the file and says what to do."""
        text = str(exc)
        if "disk is full" in text or "disk I/O error" in text:
            advice = "the disk is full: free some space, then `openended resume` the run"
        elif "readonly" in text or "read-only" in text or "unable to open" in text:
            advice = "the run folder is not writable: fix its permissions or copy the run"
        elif "malformed" in text or "not a database" in text:
            advice = "the file is damaged; restore it from a copy"
        else:
            advice = text
        kept = " (committed batches are kept)" if doing == "write" else ""
        return StoreError(f"{self.path}: could not {doing}: {advice}{kept}")

    # -- meta ------------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        self._wrote = True
        try:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, default=_json_default)),
            )
        except sqlite3.Error as exc:
            raise self._failed(exc, "write") from None

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def write_config(self, toml_text: str) -> None:
        write_config(self.run_dir, toml_text)

    @property
    def config_path(self) -> Path:
        return self.run_dir / self.CONFIG_NAME

    # -- writing -----------------------------------------------------------------------------

    def next_id(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) AS m FROM candidates").fetchone()
        return int(row["m"]) + 1

    def record_batch(
        self,
        candidates: Sequence[CandidateRecord],
        metrics: BatchMetrics,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a batch of candidates (ids already assigned), its metrics and counters in
        one transaction."""
        unfinished = [c.id for c in candidates if c.status == Status.PENDING]
        if unfinished:
            raise ValueError(f"candidates {unfinished} are still pending: evaluate them first")
        now = time.time()
        rows = [
            (
                c.id,
                c.batch,
                c.operator,
                json.dumps(list(c.parents)),
                c.genome,
                c.completion,
                c.prompt,
                Status(c.status).value,
                c.error,
                _finite(c.fitness),
                json.dumps(list(c.descriptors)) if c.descriptors is not None else None,
                json.dumps(dict(c.metrics), default=_json_default),
                int(c.added),
                c.t_generate,
                c.t_evaluate,
                c.prompt_tokens,
                c.completion_tokens,
                json.dumps(list(c.lm_faults)) if c.lm_faults else None,
                c.island,
                now,
                c.proposed,
                json.dumps(dict(c.details), default=_json_default) if c.details else None,
            )
            for c in candidates
        ]
        self._wrote = True
        try:
            self._write_batch(rows, metrics, now, meta)
        except sqlite3.IntegrityError:
            raise  # a bug, not the disk
        except sqlite3.Error as exc:
            raise self._failed(exc, "write") from None
        self._batches_since_checkpoint += 1
        if self._batches_since_checkpoint >= self.CHECKPOINT_BATCHES:
            self._batches_since_checkpoint = 0
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _write_batch(
        self,
        rows: list[tuple[Any, ...]],
        metrics: BatchMetrics,
        now: float,
        meta: Mapping[str, Any] | None,
    ) -> None:
        with self._transaction():
            self.db.executemany(
                "INSERT INTO candidates (id, batch, operator, parents, genome, completion, prompt,"
                " status, error, fitness, descriptors, metrics, added, t_generate, t_evaluate,"
                " prompt_tokens, completion_tokens, lm_faults, island, created_at, proposed,"
                " details) VALUES (" + ", ".join("?" * 22) + ")",
                rows,
            )
            m = metrics
            self.db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.batch,
                    m.evaluations,
                    m.lm_calls,
                    m.tokens,
                    m.elapsed,
                    m.num_elites,
                    m.coverage,
                    m.qd_score,
                    _finite(m.best_fitness),
                    m.valid_rate,
                    m.batch_valid_rate,
                    _finite(m.tokens_per_second),
                    now,
                ),
            )
            for key, value in (meta or {}).items():
                self.set_meta(key, value)

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> RunStore._Tx:
        return RunStore._Tx(self.db)

    # -- reading -----------------------------------------------------------------------------

    def candidates(self, *, up_to_batch: int | None = None) -> Iterator[CandidateRecord]:
        """Stored candidates in id order (optionally only batches <= `up_to_batch`)."""
        query = "SELECT * FROM candidates"
        args: tuple[Any, ...] = ()
        if up_to_batch is not None:
            query += " WHERE batch <= ?"
            args = (up_to_batch,)
        for row in self.db.execute(query + " ORDER BY id", args):
            yield self._record(row)

    @staticmethod
    def _record(row: sqlite3.Row) -> CandidateRecord:
        columns = set(row.keys())  # (a Row's `in` looks at values; schema 1 lacks the last two)
        return CandidateRecord(
            id=row["id"],
            batch=row["batch"],
            operator=row["operator"],
            parents=tuple(json.loads(row["parents"])),
            status=Status(row["status"]),
            genome=row["genome"],
            completion=row["completion"],
            prompt=row["prompt"],
            error=row["error"],
            fitness=row["fitness"],
            descriptors=tuple(json.loads(row["descriptors"])) if row["descriptors"] else None,
            metrics=json.loads(row["metrics"]) if row["metrics"] else {},
            added=bool(row["added"]),
            t_generate=row["t_generate"],
            t_evaluate=row["t_evaluate"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            lm_faults=tuple(json.loads(row["lm_faults"])) if row["lm_faults"] else (),
            island=row["island"],
            proposed=row["proposed"] if "proposed" in columns else None,
            details=json.loads(row["details"]) if "details" in columns and row["details"] else {},
        )

    def candidate(self, candidate_id: int) -> CandidateRecord | None:
        row = self.db.execute("SELECT * FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
        return self._record(row) if row else None

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])

    def last_batch(self) -> int | None:
        row = self.db.execute("SELECT MAX(batch) FROM batches").fetchone()
        return None if row[0] is None else int(row[0])

    def batch_metrics(self) -> list[BatchMetrics]:
        rows = self.db.execute("SELECT * FROM batches ORDER BY batch").fetchall()
        return [
            BatchMetrics(**{k: row[k] for k in BatchMetrics.__dataclass_fields__}) for row in rows
        ]

    def last_metrics(self) -> BatchMetrics | None:
        metrics = self.batch_metrics()
        return metrics[-1] if metrics else None

    def frame(self, table: str = "candidates") -> Any:
        """A table as a pandas DataFrame (``candidates`` or ``batches``)."""
        import pandas as pd

        if table not in ("candidates", "batches"):
            raise ValueError(f"unknown table {table!r}")
        return pd.read_sql_query(f"SELECT * FROM {table} ORDER BY 1", self.db)


REQUIRED_TABLES = {"meta", "candidates", "batches"}
MIGRATIONS = {
    1: (
        "ALTER TABLE candidates ADD COLUMN proposed TEXT",
        "ALTER TABLE candidates ADD COLUMN details TEXT",
    ),
}
"""From an older schema version: the statements that bring it to the next one."""


def check_store(path: Path, *, read_only: bool = False) -> None:
    """Raise `StoreError` unless `path` is a SQLite database with this schema and version.
    Reads only: a damaged store is reported, never rebuilt over. `read_only`: the folder
    cannot be written (the file is opened immutable)."""
    size = path.stat().st_size
    if size == 0:
        raise StoreError(
            f"{path} is empty (0 bytes): the run's store was truncated or never written; "
            "restore it from a copy, or start a new run"
        )
    wal = path.with_name(path.name + "-wal")
    hint = "" if wal.exists() else f" (its write-ahead log {wal.name} is gone)"
    try:
        connection = connect_immutable(path) if read_only else sqlite3.connect(path)
        with contextlib.closing(connection) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            missing = REQUIRED_TABLES - tables
            if missing:
                raise StoreError(
                    f"{path} holds no openended run: the tables {', '.join(sorted(missing))} "
                    f"are missing{hint}; restore it from a copy, or start a new run"
                )
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a readable SQLite database ({exc}); restore it from a copy"
        ) from None
    version = json.loads(row[0]) if row else None
    if version not in MIGRATIONS and version != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {version}, this openended reads "
            f"{', '.join(map(str, [*MIGRATIONS, SCHEMA_VERSION]))}"
        )


def _create_atomically(path: Path) -> None:
    """Write an empty store (schema and version) under a temporary name and rename it into
    place: a reader never sees a half-made ``run.sqlite``."""
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as db:
            db.executescript(SCHEMA)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (json.dumps(SCHEMA_VERSION),),
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_config(run_dir: Path, toml_text: str) -> None:
    """Write ``config.toml`` atomically (a temporary file renamed over it)."""
    target = Path(run_dir) / RunStore.CONFIG_NAME
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(toml_text)
        tmp.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StoreError(f"{target}: cannot write the run's config: {exc.strerror}") from None
