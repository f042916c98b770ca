"""The prediction log: every prediction recorded off the request path, readable back.

``open_log(settings)`` picks the backend from ``FC_PREDLOG``: ``sqlite`` (embedded default, a
local file), ``cassandra`` (the cluster, with a durable local spool), or ``off``. Opening never
connects or starts threads; ``start()`` does, inside each worker process (the app factory calls
it, so an idle worker has its backend open), or else the first prediction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from fashion_classifier.config import Settings
from fashion_classifier.predlog.base import (
    InvalidPageState,
    Page,
    PredictionLog,
    PredictionLogUnavailable,
    PredictionRecord,
)

__all__ = [
    "InvalidPageState",
    "Page",
    "PredictionLog",
    "PredictionLogUnavailable",
    "PredictionRecord",
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

    return SqliteLog(settings.sqlite_path, settings.spool_dir, settings.queue_size)


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
