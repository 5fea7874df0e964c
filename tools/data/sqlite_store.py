"""Opening the project's SQLite stores (embedding and description caches) safely from many processes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def open_wal_store(
    path: Path,
    schema: str,
    timeout_s: float,
    *,
    autocommit: bool = False,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Connect to ``path`` in WAL mode with a busy timeout and create ``schema`` (a script) if missing.

    Switching a file to WAL needs an exclusive lock, and SQLite may answer ``database is locked`` at
    once, without calling the busy handler, while another process opens the same file. The switch
    and the schema set-up therefore run under a file lock (``<path>.lock``), so processes that open
    one store together take turns; later reads and writes rely on WAL and the busy timeout.
    ``autocommit`` opens the connection with ``isolation_level=None``.
    """
    from filelock import FileLock

    conn = sqlite3.connect(
        path, timeout=timeout_s, isolation_level=None if autocommit else "DEFERRED", check_same_thread=check_same_thread
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        with FileLock(str(path) + ".lock", timeout=timeout_s):
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True when ``exc`` says the file is not a (healthy) SQLite database: garbage, truncated, bad pages."""
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc).lower()
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in text or "not a database" in text


def move_aside(path: Path, timeout_s: float) -> Path:
    """Move a broken store (and its ``-wal``/``-shm`` files) to ``<path>.corrupt`` under the store's file lock, so
    the next open starts an empty one; returns the new location. Nothing is deleted."""
    from filelock import FileLock

    target = Path(str(path) + ".corrupt")
    with FileLock(str(path) + ".lock", timeout=timeout_s):
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(path) + suffix)
            if part.exists():
                os.replace(part, Path(str(target) + suffix))
    return target
