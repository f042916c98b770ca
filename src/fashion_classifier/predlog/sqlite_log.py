"""The embedded prediction log: one SQLite file, safe for several gunicorn workers.

Each process writes from its own writer thread through :class:`SqliteSink` (``sqlite_sink``),
one transaction per batch; reads run on the request thread, on a connection per thread and
process. Ordering and paging follow the Cassandra backend: a day's rows newest first by the
time inside the id, ``page_state`` an opaque token.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from datetime import date
from pathlib import Path

from fashion_classifier.config import Settings
from fashion_classifier.predlog.backend import Backend
from fashion_classifier.predlog.base import InvalidPageState, Page, PredictionLogUnavailable, PredictionRecord
from fashion_classifier.predlog.page_tokens import decode_token, encode_token
from fashion_classifier.predlog.records import record_from_row
from fashion_classifier.predlog.sqlite_schema import migrate
from fashion_classifier.predlog.sqlite_session import connect
from fashion_classifier.predlog.sqlite_sink import SqliteSink, sort_key

# A record's columns, named as its fields.
_FIELDS = (
    "id",
    "created_at",
    "model_version",
    "predicted_class",
    "label",
    "confidence",
    "top3",
    "source",
    "filename",
    "image_width",
    "image_height",
    "latency_ms",
    "client_hash",
    "true_label",
    "arm",
    "shadow_version",
    "shadow_class",
    "shadow_confidence",
)
_SELECT = (
    "SELECT p.id, p.created_at, p.model_version, p.predicted_class, p.label, p.confidence, p.top3, "
    "p.source, p.filename, p.image_width, p.image_height, p.latency_ms, p.client_hash, f.true_label, "
    "p.arm, p.shadow_version, p.shadow_class, p.shadow_confidence "
    "FROM predictions p LEFT JOIN feedback f ON f.id = p.id"
)


def _record(row: tuple) -> PredictionRecord:
    return record_from_row(dict(zip(_FIELDS, row, strict=True)))


class SqliteLog(Backend):
    def __init__(self, settings: Settings) -> None:
        self.path = Path(settings.sqlite_path)
        super().__init__(settings, lambda: SqliteSink(self.path))
        self._local = threading.local()

    def close(self) -> None:
        super().close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- reading ----------------------------------------------------------------------------
    def get(self, prediction_id: uuid.UUID) -> PredictionRecord | None:
        rows = self._query(f"{_SELECT} WHERE p.id = ?", (str(prediction_id),))
        return _record(rows[0]) if rows else None

    def list_day(self, day: date, limit: int = 50, page_state: str | None = None) -> Page:
        params: list = [day.isoformat()]
        where = "p.day = ?"
        if page_state:
            after = decode_token(page_state)
            try:
                if after.get("b") != "sqlite" or after["d"] != day.isoformat():
                    raise InvalidPageState("page_state belongs to another query")
                ts, last_id = int(after["ts"]), str(uuid.UUID(after["id"]))
            except (KeyError, TypeError, ValueError):
                raise InvalidPageState("page_state is not a token issued by this service") from None
            where += " AND (p.ts < ? OR (p.ts = ? AND p.id < ?))"
            params += [ts, ts, last_id]
        rows = self._query(f"{_SELECT} WHERE {where} ORDER BY p.ts DESC, p.id DESC LIMIT ?", (*params, limit + 1))
        records = [_record(r) for r in rows[:limit]]
        token = None
        if len(rows) > limit:
            last = records[-1]
            token = encode_token({"b": "sqlite", "d": day.isoformat(), "ts": sort_key(last), "id": str(last.id)})
        return Page(rows=records, page_state=token)

    def recent(self, limit: int = 50) -> list[PredictionRecord]:
        rows = self._query(f"{_SELECT} ORDER BY p.ts DESC, p.id DESC LIMIT ?", (limit,))
        return [_record(r) for r in rows]

    def counts(self, day: date) -> dict[str, int]:
        rows = self._query(
            "SELECT label, COUNT(*) FROM predictions WHERE day = ? GROUP BY label ORDER BY label",
            (day.isoformat(),),
        )
        return {label: count for label, count in rows}

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise PredictionLogUnavailable("the prediction log database cannot be read") from exc

    def _reader(self) -> sqlite3.Connection:
        # One connection per thread and process: sqlite3 objects must not cross a fork.
        if getattr(self._local, "pid", None) != os.getpid() or getattr(self._local, "conn", None) is None:
            try:
                conn = connect(self.path)
                migrate(conn)
            except sqlite3.Error as exc:
                raise PredictionLogUnavailable("the prediction log database cannot be read") from exc
            self._local.conn, self._local.pid = conn, os.getpid()
        return self._local.conn
