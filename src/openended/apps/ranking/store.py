"""The ranking database: prompts, candidates, raters and every judgment, in SQLite (WAL).

Each judgment is committed before the server answers, so the next pair is only shown once
the last choice is on disk. Judgments are never deleted: an undo marks one `undone`, and
every submission and undo is also appended to the raw `events` table. One connection is
shared by the server's threads; a re-entrant lock serialises its use, and a transaction
holds it from BEGIN to COMMIT, so no thread reads another's uncommitted writes.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openended.apps.ranking.choice import Choice
from openended.apps.ranking.inputs import Candidate, RankPrompt
from openended.errors import UserError
from openended.sqlite import connect_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    idx INTEGER PRIMARY KEY, prompt_id TEXT UNIQUE NOT NULL, prompt TEXT NOT NULL,
    language TEXT
);
CREATE TABLE IF NOT EXISTS candidates (
    prompt_idx INTEGER NOT NULL, idx INTEGER NOT NULL, candidate_id TEXT NOT NULL,
    text TEXT NOT NULL, PRIMARY KEY (prompt_idx, idx)
);
CREATE TABLE IF NOT EXISTS raters (
    name TEXT PRIMARY KEY, token TEXT UNIQUE NOT NULL, admin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY, rater TEXT NOT NULL, prompt_idx INTEGER NOT NULL,
    step INTEGER NOT NULL, kind TEXT NOT NULL, left_idx INTEGER NOT NULL,
    right_idx INTEGER NOT NULL, result TEXT NOT NULL, repeat_of INTEGER, seconds REAL,
    created REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0, shown TEXT, best_idx INTEGER,
    worst_idx INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS one_judgment_per_step
    ON judgments (rater, prompt_idx, step) WHERE undone = 0;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, rater TEXT NOT NULL, type TEXT NOT NULL,
    payload TEXT NOT NULL
);
"""

RESULTS = ("left", "right", "tie", "both_bad")
CHOICE = "choice"  # the result of a multi-way screen: see best_idx and worst_idx
# Columns added after the first release: databases made before get them on open.
ADDED_COLUMNS = {"shown": "TEXT", "best_idx": "INTEGER", "worst_idx": "INTEGER"}
ADMIN = "admin"


class RankingStoreError(UserError, RuntimeError):
    """The ranking database cannot be used as asked (other input, other settings)."""


@dataclass(frozen=True)
class StoredJudgment:
    """One answer to a screen. A pair: `left_idx` and `right_idx` are the candidate
    indices as shown, `result` one of RESULTS. A multi-way screen (`result` "choice"):
    `shown` holds the candidate indices in their slots on screen (left_idx and right_idx
    the first two), `best_idx` the one picked as best and `worst_idx` the worst (or None
    where the screen does not ask)."""

    id: int
    rater: str
    prompt_idx: int
    step: int
    kind: str  # "schedule" or "repeat"
    left_idx: int
    right_idx: int
    result: str  # one of RESULTS
    repeat_of: int | None
    seconds: float | None
    created: float
    undone: bool = False
    shown: tuple[int, ...] = ()
    best_idx: int | None = None
    worst_idx: int | None = None

    def __post_init__(self) -> None:
        if not self.shown:
            object.__setattr__(self, "shown", (self.left_idx, self.right_idx))

    @property
    def screen(self) -> str:
        """The screen type answered: "pair", "best-of-K" or "best-worst-K"."""
        if not self.is_choice:
            return "pair"
        kind = "best-worst" if self.worst_idx is not None else "best-of"
        return f"{kind}-{len(self.shown)}"

    @property
    def is_choice(self) -> bool:
        """A multi-way screen's answer (best, or best and worst, of `shown`)."""
        return self.result == CHOICE

    def implied_pairs(self) -> list[tuple[int, int]]:
        """(winner, loser) pairs the answer implies: one for a decisive pair, none for a
        tie; for a multi-way screen the best over each other item shown, and each other
        item over the worst."""
        if self.is_choice:
            assert self.best_idx is not None
            return Choice(self.shown, self.best_idx, self.worst_idx).implied_pairs()
        if self.winner is None or self.loser is None:
            return []
        return [(self.winner, self.loser)]

    @property
    def winner(self) -> int | None:
        """The candidate chosen on a pair, or None for a tie, 'both bad' or a multi-way
        screen (see `implied_pairs`)."""
        if self.result == "left":
            return self.left_idx
        if self.result == "right":
            return self.right_idx
        return None

    @property
    def loser(self) -> int | None:
        if self.result == "left":
            return self.right_idx
        if self.result == "right":
            return self.left_idx
        return None


class RankingStore:
    """One ranking session's SQLite database."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        self.db = connect_wal(self.path, synchronous="FULL")  # a judgment survives power loss
        self.db.executescript(SCHEMA)
        columns = {row["name"] for row in self.db.execute("PRAGMA table_info(judgments)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in columns:
                self.db.execute(f"ALTER TABLE judgments ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: a writer holds the lock from its first read."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    # --- setup -------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def initialise(
        self,
        prompts: Sequence[RankPrompt],
        fingerprint: str,
        defaults: dict[str, Any],
        given: dict[str, Any],
    ) -> None:
        """Store the prompts and settings (`defaults` updated with `given`) on first use;
        on later use, check the input and the `given` settings match what is stored
        (another input or other schedule settings would not replay the judgments)."""
        settings = defaults | given
        stored = self.get_meta("fingerprint")
        if stored is None:
            with self.transaction() as db:
                for idx, prompt in enumerate(prompts):
                    db.execute(
                        "INSERT INTO prompts (idx, prompt_id, prompt, language) VALUES (?,?,?,?)",
                        (idx, prompt.id, prompt.prompt, prompt.language),
                    )
                    db.executemany(
                        "INSERT INTO candidates VALUES (?, ?, ?, ?)",
                        [(idx, k, c.id, c.text) for k, c in enumerate(prompt.candidates)],
                    )
                self.set_meta("fingerprint", fingerprint)
                self.set_meta("settings", settings)
            return
        if stored != fingerprint:
            raise RankingStoreError(
                f"{self.path} was made for other input (its prompts or candidates differ); "
                "use --db to start a new ranking session"
            )
        old = self.get_meta("settings", {})
        changed = sorted(k for k in given if old.get(k, defaults.get(k)) != given[k])
        if changed:
            key = changed[0]
            raise RankingStoreError(
                f"{self.path} was started with {key} = {old.get(key)!r}, not {given[key]!r}; "
                "the recorded judgments follow those settings (omit the option, or use --db)"
            )

    def settings(self) -> dict[str, Any]:
        return dict(self.get_meta("settings", {}))

    def add_raters(self, names: Sequence[str]) -> dict[str, str]:
        """Create raters not yet known (and the admin); returns every name -> token."""
        with self.transaction() as db:
            for name, admin in [(ADMIN, 1), *((n, 0) for n in names)]:
                if name == ADMIN and admin == 0:
                    raise RankingStoreError(f"{ADMIN!r} is reserved for the admin token")
                db.execute(
                    "INSERT OR IGNORE INTO raters (name, token, admin) VALUES (?, ?, ?)",
                    (name, secrets.token_urlsafe(16), admin),
                )
        rows = self._read("SELECT name, token FROM raters ORDER BY rowid")
        return {row["name"]: row["token"] for row in rows}

    def rater_for_token(self, token: str) -> tuple[str, bool] | None:
        rows = self._read("SELECT name, admin FROM raters WHERE token = ?", (token,))
        return (rows[0]["name"], bool(rows[0]["admin"])) if rows else None

    def raters(self) -> list[str]:
        rows = self._read("SELECT name FROM raters WHERE admin = 0 ORDER BY rowid")
        return [row["name"] for row in rows]

    # --- reading -----------------------------------------------------------------

    def prompts(self) -> list[RankPrompt]:
        result = []
        for row in self._read("SELECT * FROM prompts ORDER BY idx"):
            cands = self._read(
                "SELECT candidate_id, text FROM candidates WHERE prompt_idx = ? ORDER BY idx",
                (row["idx"],),
            )
            result.append(
                RankPrompt(
                    row["prompt_id"],
                    row["prompt"],
                    tuple(Candidate(c["candidate_id"], c["text"]) for c in cands),
                    row["language"],
                )
            )
        return result

    def judgments(
        self,
        *,
        rater: str | None = None,
        prompt_idx: int | None = None,
        include_undone: bool = False,
    ) -> list[StoredJudgment]:
        clauses, args = [], []
        if rater is not None:
            clauses.append("rater = ?")
            args.append(rater)
        if prompt_idx is not None:
            clauses.append("prompt_idx = ?")
            args.append(prompt_idx)
        if not include_undone:
            clauses.append("undone = 0")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(f"SELECT * FROM judgments {where} ORDER BY id", args)
        return [_judgment(row) for row in rows]

    def events(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM events ORDER BY id")
        return [
            {"id": r["id"], "time": r["time"], "rater": r["rater"], "type": r["type"]}
            | json.loads(r["payload"])
            for r in rows
        ]

    # --- writing (callers hold a transaction) ------------------------------------

    def insert_judgment(self, db: sqlite3.Connection, judgment: dict[str, Any]) -> StoredJudgment:
        now = time.time()
        shown = judgment.get("shown")
        cursor = db.execute(
            "INSERT INTO judgments (rater, prompt_idx, step, kind, left_idx, right_idx, result,"
            " repeat_of, seconds, created, shown, best_idx, worst_idx)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                judgment["rater"],
                judgment["prompt_idx"],
                judgment["step"],
                judgment["kind"],
                judgment["left_idx"],
                judgment["right_idx"],
                judgment["result"],
                judgment["repeat_of"],
                judgment["seconds"],
                now,
                json.dumps(list(shown)) if shown is not None else None,
                judgment.get("best_idx"),
                judgment.get("worst_idx"),
            ),
        )
        judgment_id = int(cursor.lastrowid or 0)
        self.log(db, judgment["rater"], "judgment", {"judgment_id": judgment_id, **judgment})
        rows = db.execute("SELECT * FROM judgments WHERE id = ?", (judgment_id,)).fetchall()
        return _judgment(rows[0])

    def mark_undone(self, db: sqlite3.Connection, judgment: StoredJudgment) -> None:
        db.execute("UPDATE judgments SET undone = 1 WHERE id = ?", (judgment.id,))
        self.log(db, judgment.rater, "undo", {"judgment_id": judgment.id})

    @staticmethod
    def log(db: sqlite3.Connection, rater: str, kind: str, payload: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO events (time, rater, type, payload) VALUES (?, ?, ?, ?)",
            (time.time(), rater, kind, json.dumps(payload)),
        )


def _judgment(row: sqlite3.Row) -> StoredJudgment:
    """A judgments row (its columns are StoredJudgment's fields)."""
    fields = dict(row)
    fields["undone"] = bool(fields["undone"])
    fields["shown"] = tuple(json.loads(fields["shown"] or "[]"))
    return StoredJudgment(**fields)
