"""Writes of the SQLite prediction log: the sink the AsyncWriter drives.

Each batch from the writer is one transaction (``BEGIN IMMEDIATE``, waiting on the busy timeout
while another process writes). Rows are keyed by prediction id (``INSERT OR REPLACE``), so a
replayed spool never duplicates. A batch that fails goes back to the writer, which spools it.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from datetime import UTC, date
from pathlib import Path

from fashion_classifier import timeuuid
from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.base import PredictionBatch, PredictionRecord
from fashion_classifier.predlog.days import DayBuckets, day_of
from fashion_classifier.predlog.items import Feedback, Item
from fashion_classifier.predlog.limits import limit_filename
from fashion_classifier.predlog.records import IsoTimes, batch_columns, shadow_columns
from fashion_classifier.predlog.sqlite_schema import migrate
from fashion_classifier.predlog.sqlite_session import connect
from fashion_classifier.predlog.writer import Done

log = logging.getLogger(__name__)

_COLUMNS = (
    "id, day, ts, created_at, model_version, predicted_class, label, confidence, top3, source, "
    "filename, image_width, image_height, latency_ms, client_hash, arm, shadow_version, shadow_class, "
    "shadow_confidence"
)
_PLACEHOLDERS = ", ".join("?" * len(_COLUMNS.split(",")))


def sort_key(rec: PredictionRecord) -> int:
    """100 ns ticks of the id's time, like Cassandra's timeuuid clustering order (the ``ts`` column)."""
    if timeuuid.moment(rec.id) is not None:
        return rec.id.time
    return timeuuid.EPOCH_TICKS + int(rec.created_at.timestamp() * 10_000_000)


def _row(rec: PredictionRecord) -> tuple:
    return (
        str(rec.id),
        day_of(rec).isoformat(),
        sort_key(rec),
        rec.created_at.astimezone(UTC).isoformat(),
        rec.model_version,
        rec.predicted_class,
        rec.label,
        rec.confidence,
        json.dumps([[name, prob] for name, prob in rec.top3]),
        rec.source,
        rec.filename,
        rec.image_width,
        rec.image_height,
        rec.latency_ms,
        rec.client_hash,
        rec.arm,
        rec.shadow_version,
        rec.shadow_class,
        rec.shadow_confidence,
    )


def _top3_json(quoted: list[str], top: list[int], row: list[float]) -> str:
    """``json.dumps([[name, p], ...])`` of the top classes, cheaper (the usual 3 in one format)."""
    if len(top) == 3:
        a, b, c = top
        pa, pb, pc = row[a], row[b], row[c]
        if math.isfinite(pa + pb + pc):  # json.dumps writes finite floats with float.__repr__ too
            return f"[[{quoted[a]}, {pa!r}], [{quoted[b]}, {pb!r}], [{quoted[c]}, {pc!r}]]"
    return json.dumps([[json.loads(quoted[k]), row[k]] for k in top])


class _BatchRows:
    """Table rows of PredictionBatches, built with per-batch work done once per batch.

    Same values as :func:`_row` of the batch's records (a test checks it), without building the
    records: the day string, created_at and the quoted labels are computed once, not per row.
    """

    def __init__(self) -> None:
        self._days = DayBuckets()
        self._day_key: date | None = None
        self._day_iso = ""
        self._times = IsoTimes()
        self._names: object = None
        self._quoted: list[str] = []

    def extend(self, out: list[tuple], batch: PredictionBatch) -> None:
        classes, top3, probs = batch_columns(batch)
        names = batch.names
        if names is not self._names:  # the model's class names: the same object batch after batch
            self._names, self._quoted = names, [json.dumps(name) for name in names]
        quoted = self._quoted
        created = self._times.iso(batch.created_us)
        version, source, latency, client = batch.model_version, batch.source, batch.latency_ms, batch.client_hash
        arm, shadow_version = batch.arm, batch.shadow_version
        shadow_classes, shadow_confidences = shadow_columns(batch)
        infos = batch.infos
        days = self._days
        for i, pid in enumerate(batch.ids):
            ticks = timeuuid.ticks(pid)
            day = days.of_ticks(ticks)
            if day is not self._day_key:
                self._day_key, self._day_iso = day, day.isoformat()
            cls, row = classes[i], probs[i]
            top = _top3_json(quoted, top3[i], row)
            if infos is None:
                filename = width = height = None
            else:
                info = infos[i]
                filename, width, height = limit_filename(info.filename), info.width, info.height
            out.append(
                (
                    str(pid),
                    self._day_iso,
                    ticks,
                    created,
                    version,
                    cls,
                    names[cls],
                    row[cls],
                    top,
                    source,
                    filename,
                    width,
                    height,
                    latency,
                    client,
                    arm,
                    shadow_version,
                    None if shadow_classes is None else shadow_classes[i],
                    None if shadow_confidences is None else shadow_confidences[i],
                )
            )


class SqliteSink:
    """Writes batches synchronously in the writer thread, one transaction each."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        migrate(self._conn)
        self._batch_rows = _BatchRows()
        metrics.CONNECTED.set(1)

    def writable(self) -> bool:
        return True

    def write(self, items: list[Item], done: Done) -> None:
        predictions: list[tuple] = []
        feedback = []
        for i in items:
            kind = type(i)
            if kind is PredictionBatch:
                self._batch_rows.extend(predictions, i)
            elif kind is Feedback:
                feedback.append((str(i.prediction_id), i.true_label, i.created_at.astimezone(UTC).isoformat()))
            else:
                predictions.append(_row(i))
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO predictions ({_COLUMNS}) VALUES ({_PLACEHOLDERS})", predictions
                )
                self._conn.executemany("INSERT OR REPLACE INTO feedback VALUES (?, ?, ?)", feedback)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.warning("prediction log: sqlite write failed (%s); items go to the spool", exc)
            metrics.CONNECTED.set(0)
            done(items)
            return
        metrics.CONNECTED.set(1)
        done([])

    def close(self) -> None:
        self._conn.close()
