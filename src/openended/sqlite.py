"""SQLite connections as every store here opens them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal


def connect_wal(
    path: str | Path, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
) -> sqlite3.Connection:
    """A connection in WAL mode (readers never block the writer), autocommit unless a
    transaction is begun explicitly, usable from several threads (callers serialise),
    rows readable by column name, waiting up to 10 s for a lock."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA busy_timeout=10000")
    return connection
