"""Versioned, idempotent schema of the SQLite prediction log (`fashion-classifier migrate`).

* ``predictions``: one row per prediction keyed by its id, filed under the UTC day of the id
  (``day``) and ordered by the time inside it (``ts``, 100 ns ticks), as Cassandra orders a day.
* ``feedback``: the true label sent for a prediction, by id.
* ``schema_migrations``: the versions applied, so a re-run changes nothing.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from fashion_classifier.predlog.sqlite_session import connect

# (version, description, statements). Append only; never edit an applied migration.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "predictions and feedback",
        (
            """CREATE TABLE IF NOT EXISTS predictions (
                id TEXT PRIMARY KEY,
                day TEXT NOT NULL,
                ts INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                model_version TEXT NOT NULL,
                predicted_class INTEGER NOT NULL,
                label TEXT NOT NULL,
                confidence REAL NOT NULL,
                top3 TEXT NOT NULL,
                source TEXT NOT NULL,
                filename TEXT,
                image_width INTEGER,
                image_height INTEGER,
                latency_ms REAL,
                client_hash TEXT
            )""",
            "CREATE INDEX IF NOT EXISTS predictions_by_day ON predictions (day, ts DESC, id DESC)",
            "CREATE INDEX IF NOT EXISTS predictions_by_time ON predictions (ts DESC, id DESC)",
            """CREATE TABLE IF NOT EXISTS feedback (
                id TEXT PRIMARY KEY,
                true_label INTEGER NOT NULL,
                created_at TEXT NOT NULL
            )""",
        ),
    ),
    (
        2,
        "rollout arm and shadow prediction",
        (
            "ALTER TABLE predictions ADD COLUMN arm TEXT",
            "ALTER TABLE predictions ADD COLUMN shadow_version TEXT",
            "ALTER TABLE predictions ADD COLUMN shadow_class INTEGER",
            "ALTER TABLE predictions ADD COLUMN shadow_confidence REAL",
        ),
    ),
)


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply missing migrations; returns the versions applied now (empty when up to date)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied_now = []
    conn.execute("BEGIN IMMEDIATE")  # one process at a time
    try:
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, description, statements in MIGRATIONS:
            if version in done:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (version, description, datetime.now(UTC).isoformat()),
            )
            applied_now.append(version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied_now


def migrate_file(path: Path) -> list[int]:
    """:func:`migrate` on the file at ``path`` (created if missing), on a connection of its own."""
    conn = connect(Path(path))
    try:
        return migrate(conn)
    finally:
        conn.close()
