"""The prediction log: every prediction recorded off the request path, readable back.

``open_log(settings)`` picks the backend from ``FC_PREDLOG``: ``sqlite`` (embedded default, a
local file), ``cassandra`` (the cluster, with a durable local spool), or ``off``. Opening never
connects or starts threads; ``start()`` does, inside each worker process (the app factory calls
it, so an idle worker has its backend open), or else the first prediction. ``migrate(settings)``
creates or updates the backend's schema (`fashion-classifier migrate`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from fashion_classifier.config import Settings
from fashion_classifier.predlog.base import (
    InvalidPageState,
    MigrationFailed,
    Page,
    PredictionLog,
    PredictionLogUnavailable,
    PredictionRecord,
)

__all__ = [
    "InvalidPageState",
    "MigrationFailed",
    "Migrated",
    "Page",
    "PredictionLog",
    "PredictionLogUnavailable",
    "PredictionRecord",
    "migrate",
    "open_log",
    "when_available",
]

T = TypeVar("T")


def open_log(settings: Settings) -> PredictionLog:
    if settings.predlog == "off":
        from fashion_classifier.predlog.null_log import NullLog

        return NullLog()
    if settings.predlog == "cassandra":
        from fashion_classifier.predlog.cassandra_log import CassandraLog

        return CassandraLog(settings)
    from fashion_classifier.predlog.sqlite_log import SqliteLog

    return SqliteLog(settings)


class Migrated(NamedTuple):
    applied: list[int]  # migration versions applied now; empty when the schema was up to date
    target: str  # what was migrated, e.g. "sqlite var/predictions.sqlite3"


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr)


def migrate(
    settings: Settings,
    wait: float = 60.0,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] = _to_stderr,
) -> Migrated:
    """Create or update the schema of the configured backend (idempotent).

    Cassandra is waited for up to ``wait`` seconds, and its roles set up with the schema
    (``cassandra_migrate``); ``say`` reports progress, ``warn`` retries and warnings. Raises
    :class:`MigrationFailed`.
    """
    if settings.predlog == "off":
        raise MigrationFailed("FC_PREDLOG=off: there is no prediction-log schema to migrate")
    if settings.predlog == "cassandra":
        from fashion_classifier.predlog import cassandra_migrate

        return Migrated(*cassandra_migrate.migrate(settings, wait, say, warn))
    from fashion_classifier.predlog import sqlite_schema

    return Migrated(sqlite_schema.migrate_file(settings.sqlite_path), f"sqlite {settings.sqlite_path}")


def when_available(read: Callable[[], T], wait: float) -> T:
    """``read()``, tried again for up to ``wait`` seconds while the log is unavailable: a command's
    first read also starts the connection (Cassandra), which takes a moment."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return read()
        except PredictionLogUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
