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


def connect_immutable(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to a database on a read-only file system (where SQLite cannot
    create the ``-shm`` file a WAL database needs): nothing may change the file meanwhile."""
    uri = Path(path).resolve().as_uri() + "?immutable=1"
    connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection
