"""Opening the SQLite file: one place for its settings (WAL, busy timeout, synchronous).

WAL mode lets readers run beside the single writer; a process that finds another holding the
write lock waits up to the busy timeout.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")  # durable at each WAL checkpoint; fine for a log
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting for other processes doing the same.

    The switch needs an exclusive lock, and SQLite does not call the busy handler for it: when
    two gunicorn workers opened a new database at the same moment, one of them could get
    "database is locked" at once and its prediction log never opened.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
