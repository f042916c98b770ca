"""Reading a day's predictions back, newest first, across its bucket partitions.

A page walks ``buckets_by_day`` newest first and reads whole minutes of partitions in one request
each (every partition gives at most the rows still wanted), merged by id: the newest minute first,
then as many minutes as the rows seen so far suggest. A minute's rows are all newer than the
previous minute's, so the walk stops once it has one row more than the page; the page's last id
is where the next page continues (``id <`` it). The tables of migration 1 are read beside while
they may hold rows (``cassandra_schema.legacy_read_until``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from fashion_classifier import timeuuid
from fashion_classifier.predlog.cassandra_buckets import (
    BUCKETS_PER_DAY,
    SHARDS,
    SLOTS_PER_DAY,
    last_bucket_at_or_before,
    place,
)
from fashion_classifier.predlog.cassandra_encoder import COLUMNS, LEGACY_COLUMNS
from fashion_classifier.predlog.cassandra_schema import LEGACY_TABLES

INDEX_PAGE = 64  # buckets read from the index at a time
HEAD_FRESH = 1.0  # seconds the newest buckets of a day are reused for first pages
MAX_BUCKETS_PER_READ = 64  # partitions one read asks for (whole minutes: up to 7 more)
# Today's minutes younger than this are read whole (every shard), not through the bucket index:
# longer than a bucket's first write can take to be marked beside its rows (the write timeout).
RECENT = timedelta(seconds=HEAD_FRESH + 30)
_LOW_64 = (1 << 64) - 1
_SIGNED_BYTES = 0x8080808080808080


def newest_first(prediction_id: uuid.UUID) -> tuple[int, int]:
    """Sort key of Cassandra's timeuuid order (time, then the low 8 bytes as signed bytes); sort
    with ``reverse=True`` for the tables' DESC clustering."""
    return timeuuid.ticks(prediction_id), (prediction_id.int & _LOW_64) ^ _SIGNED_BYTES


class History:
    """The read statements of one keyspace and the page merge over them."""

    def __init__(self, session, keyspace: str) -> None:
        self._session = session
        tables = session.cluster.metadata.keyspaces[keyspace].tables
        # Whether the tables of migration 1 are read too: set by the owner while they hold rows.
        self.legacy = False
        self.has_legacy_tables = legacy = all(table in tables for table in LEGACY_TABLES)
        table = f"{keyspace}.predictions_by_bucket"
        columns = f"{COLUMNS}, true_label"
        self._buckets = session.prepare(
            f"SELECT bucket FROM {keyspace}.buckets_by_day WHERE day = ? AND bucket >= 0 AND bucket <= ?"
        )
        self._head = session.prepare(
            f"SELECT bucket FROM {keyspace}.buckets_by_day WHERE day = ? AND bucket >= 0 AND bucket <= ? LIMIT ?"
        )
        self._heads: dict[date, tuple[float, list[int]]] = {}
        self._rows = session.prepare(
            f"SELECT {columns} FROM {table} WHERE day = ? AND bucket IN ? PER PARTITION LIMIT ?"
        )
        self._rows_before = session.prepare(
            f"SELECT {columns} FROM {table} WHERE day = ? AND bucket IN ? AND id < ? PER PARTITION LIMIT ?"
        )
        self._one = session.prepare(f"SELECT {columns} FROM {table} WHERE day = ? AND bucket = ? AND id = ?")
        if legacy:
            old = f"{keyspace}.predictions_by_day"
            self._old_rows = session.prepare(f"SELECT {LEGACY_COLUMNS} FROM {old} WHERE day = ? LIMIT ?")
            self._old_rows_before = session.prepare(
                f"SELECT {LEGACY_COLUMNS} FROM {old} WHERE day = ? AND id < ? LIMIT ?"
            )
            self._old_one = session.prepare(f"SELECT {LEGACY_COLUMNS} FROM {old} WHERE day = ? AND id = ?")
            self.old_labels = session.prepare(f"SELECT label FROM {old} WHERE day = ?")
            self._labels_by_id = session.prepare(
                f"SELECT id, true_label FROM {table} WHERE day = ? AND bucket IN ? AND id IN ?"
            )
            self._old_feedback = session.prepare(f"SELECT id, true_label FROM {keyspace}.feedback_by_id WHERE id IN ?")

    def get(self, prediction_id: uuid.UUID) -> tuple[object, int | None] | None:
        """The row of an id and its true label (None when no feedback), or None."""
        day, bucket = place(prediction_id)
        row = self._session.execute(self._one, (day, bucket, prediction_id)).one()
        label = row.true_label if row is not None else None
        if row is not None and row.label is None:
            row = None  # only a label: feedback on a row of the old tables, or on a row never written
        if row is None and self.legacy:
            row = self._session.execute(self._old_one, (day, prediction_id)).one()
        if row is None:
            return None
        if label is None and self.legacy:
            label = self._old_labels([row.id]).get(row.id)
        return row, label

    def _old_labels(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        out: dict[uuid.UUID, int] = {}
        for start in range(0, len(ids), 100):
            for found in self._session.execute(self._old_feedback, (ids[start : start + 100],)):
                out[found.id] = found.true_label
        return out

    def page(
        self, day: date, limit: int, before: uuid.UUID | None
    ) -> tuple[list, uuid.UUID | None, dict[uuid.UUID, int]]:
        """Up to ``limit`` rows of the day older than ``before`` (all when None), newest first; the
        id the next page starts below (None: no more rows); the true labels sent for the rows."""
        want = limit + 1
        old = None
        if self.legacy:
            if before is None:
                old = self._session.execute_async(self._old_rows, (day, want))
            else:
                old = self._session.execute_async(self._old_rows_before, (day, before, want))
        if before is None:
            buckets = self._newest_buckets(day)
        else:
            buckets = self._buckets_from(day, last_bucket_at_or_before(before))
        rows: list = []
        chunks = _Minutes(buckets)
        size = 1  # minutes in the next read: one, then as many as the rows seen so far suggest
        while len(rows) < want:
            chunk = chunks.take(size)
            if not chunk:
                break
            found = self._read(day, chunk, before, want - len(rows))
            rows += found
            if found:
                per_minute = len(found) / len({bucket // SHARDS for bucket in chunk})
                size = math.ceil(1.5 * (want - len(rows)) / per_minute)
            else:  # nothing to go by (today's minute ahead, an empty minute): twice as far
                size *= 2
        full = len(rows) >= want
        if old is not None:
            found = old.result().current_rows
            full = full or len(found) >= want
            rows += found
            rows.sort(key=lambda row: newest_first(row.id), reverse=True)
        rows, labels = _merge(rows)
        next_before = None
        if len(rows) > limit:
            next_before = rows[limit - 1].id
        elif full and rows:
            next_before = rows[-1].id  # duplicates merged away: a short page, and more may follow
        # A row without a label holds only feedback (on a row of the old tables, or on one never
        # written). It held its place in the merge (each partition gave its newest rows); it leaves now.
        rows = [row for row in rows[:limit] if row.label is not None]
        if old is not None:
            unlabelled = [row.id for row in rows if row.id not in labels]
            labels.update(self._old_labels(unlabelled))
            labels.update(self._new_labels(day, [i for i in unlabelled if i not in labels]))
        return rows, next_before, labels

    def _new_labels(self, day: date, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Labels the new table holds for rows of the old one (feedback sent after the upgrade: its
        bucket is in no index), by id."""
        if not ids:
            return {}
        buckets = sorted({place(i)[1] for i in ids})
        found = self._session.execute(self._labels_by_id, (day, buckets, ids))
        return {row.id: row.true_label for row in found if row.true_label is not None}

    def _buckets_from(self, day: date, upper: int) -> Iterator[int]:
        """The day's buckets from ``upper`` down, read from the index as they are needed."""
        index = self._buckets.bind((day, upper))
        index.fetch_size = INDEX_PAGE
        for (bucket,) in self._session.execute(index):
            yield bucket

    def _newest_buckets(self, day: date) -> Iterator[int]:
        """The day's buckets newest first.

        Today's last minutes (from a minute ahead, for writers whose clock runs ahead, back to
        RECENT ago) are listed whole, all shards, not from the index: a writer marks a new bucket
        beside its first rows, and a page that merged a minute without it would skip its rows for
        good. Below them, and on other days, the first INDEX_PAGE index entries are reused for
        HEAD_FRESH seconds, so a first page mostly costs one round trip; a bucket created since
        (a late spool replay) shows up that much later.
        """
        now = datetime.now(UTC)
        upper = BUCKETS_PER_DAY - 1
        if day == now.date():
            ahead = now + timedelta(minutes=1)
            newest = _minute_of(ahead) if ahead.date() == day else SLOTS_PER_DAY - 1
            oldest = _minute_of(max(now - RECENT, datetime(day.year, day.month, day.day, tzinfo=UTC)))
            for minute in range(newest, oldest - 1, -1):
                yield from range(minute * SHARDS + SHARDS - 1, minute * SHARDS - 1, -1)
            if oldest == 0:
                return
            yield from self._buckets_from(day, oldest * SHARDS - 1)
            return
        started = time.monotonic()
        cached = self._heads.get(day)
        if cached is None or started - cached[0] >= HEAD_FRESH:
            found = self._session.execute(self._head, (day, upper, INDEX_PAGE))
            head = [bucket for (bucket,) in found]
            if len(self._heads) > 64:
                self._heads.clear()
            cached = self._heads[day] = (started, head)
        head = cached[1]
        yield from head
        if len(head) == INDEX_PAGE:
            yield from self._buckets_from(day, head[-1] - 1)

    def _read(self, day: date, buckets: list[int], before: uuid.UUID | None, want: int) -> list:
        """The newest ``want`` rows of whole minutes' partitions, in one request (each partition
        gives its newest ``want``: PER PARTITION LIMIT), merged here. As fast as one request per
        partition at the median (bench/results/predlog-schema-2026-12-06-run*)."""
        if before is None:
            rows = list(self._session.execute(self._rows, (day, buckets, want)))
        else:
            rows = list(self._session.execute(self._rows_before, (day, buckets, before, want)))
        if len(buckets) > 1:
            rows.sort(key=lambda row: newest_first(row.id), reverse=True)
        return rows[:want]


def _minute_of(moment: datetime) -> int:
    return moment.hour * 60 + moment.minute


def _merge(rows: list) -> tuple[list, dict[uuid.UUID, int]]:
    """Sorted rows with each id once, and the true labels among them. An id is in both tables when
    feedback on an old row was written after the upgrade (the new table holds just its label), or
    when a spool of the previous release replayed a row that had landed there."""
    merged: list = []
    labels: dict[uuid.UUID, int] = {}
    for row in rows:
        label = getattr(row, "true_label", None)
        if label is not None:
            labels.setdefault(row.id, label)
        if merged and merged[-1].id == row.id:
            if merged[-1].label is None:
                merged[-1] = row
            continue
        merged.append(row)
    return merged, labels


class _Minutes:
    """Takes a day's buckets (newest first) a number of whole minutes at a time: the rows of a
    minute must all be merged before a page can end inside it."""

    def __init__(self, buckets: Iterator[int]) -> None:
        self._buckets = buckets
        self._next: int | None = next(buckets, None)

    def take(self, minutes: int) -> list[int]:
        """The buckets of the next ``minutes`` minutes that have any, at most MAX_BUCKETS_PER_READ
        (rounded up to a whole minute)."""
        out: list[int] = []
        seen = 0
        while self._next is not None:
            minute = self._next // SHARDS
            if not out or out[-1] // SHARDS != minute:
                if seen == minutes or len(out) >= MAX_BUCKETS_PER_READ:
                    break
                seen += 1
            out.append(self._next)
            self._next = next(self._buckets, None)
        return out
