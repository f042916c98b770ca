"""Counts per class of a day from rollups: one row per hour to read, never incremented.

Rollups live in ``buckets_by_day``: each bucket's count of its rows (read at consistency ALL),
and each hour's sum of its buckets (rows with negative bucket numbers). A rollup is a count, not
an increment, so recomputing it gives the same value however often rows were replayed or retried.

A rollup is stored only once it has settled: its minute (or hour) ended and its last mark
(``written_at``, moved by every late write to the bucket and its hour) are SETTLE in the past
when the count starts. It is trusted while ``counted_at`` stays SETTLE after both; a later mark
makes it stale, and it is counted again. SETTLE is longer than a write's timeout (and the clock
skew between writers), so a row a writer sent before its bucket settled has landed, or failed and
gone to the spool (whose replay marks the bucket again), by the time a count starts.

A settled day is read as its hour rows alone. The process that wrote a bucket rolls it and its hour
up shortly after they settle (:meth:`Rollups.roll`); a count request computes whatever is still
unsettled or stale (today's last hour or so), within its budget.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from cassandra import ConsistencyLevel, OperationTimedOut, ReadFailure, ReadTimeout, Unavailable, WriteTimeout

from fashion_classifier.predlog.base import PredictionLogUnavailable
from fashion_classifier.predlog.cassandra_buckets import BUCKETS_PER_HOUR, hour_end, hour_of, hour_row, slot_end

SETTLE = timedelta(seconds=30)
# What a read at ALL meets when a replica is down or slow: answer from the others, store nothing.
UNREACHABLE = (Unavailable, ReadTimeout, ReadFailure, OperationTimedOut)
PAGE_ROWS = 5000  # rows per page when a bucket's labels are read
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class CountBudgetExceeded(PredictionLogUnavailable):
    """Counting took longer than a request may."""


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return _NEVER
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _add(total: dict[str, int], counts) -> None:
    for label, n in (counts or {}).items():
        total[label] = total.get(label, 0) + n


class Rollups:
    """Reads and writes the count rollups of one keyspace."""

    def __init__(self, session, keyspace: str) -> None:
        self._session = session
        table = f"{keyspace}.buckets_by_day"
        columns = "bucket, written_at, counted_at, counts"
        self._hours = session.prepare(f"SELECT {columns} FROM {table} WHERE day = ? AND bucket < 0")
        self._one = session.prepare(f"SELECT {columns} FROM {table} WHERE day = ? AND bucket = ?")
        self._hour_buckets = session.prepare(
            f"SELECT {columns} FROM {table} WHERE day = ? AND bucket >= ? AND bucket < ?"
        )
        self._labels = session.prepare(
            f"SELECT label FROM {keyspace}.predictions_by_bucket WHERE day = ? AND bucket = ?"
        )
        self._store = session.prepare(
            f"UPDATE {table} USING TIMESTAMP ? SET counts = ?, counted_at = ? WHERE day = ? AND bucket = ?"
        )
        self._store.is_idempotent = True

    def day(self, day: date, deadline: float) -> dict[str, int]:
        """Counts per label of the day: settled hours from their rows, the others from their buckets."""
        total: dict[str, int] = {}
        for row in self._session.execute(self._hours, (day,)):
            hour = -1 - row.bucket
            if row.counted_at is not None and _utc(row.counted_at) >= self._settled(hour_end(day, hour), row):
                _add(total, row.counts)
            else:
                _add(total, self._hour(day, hour, row.written_at, deadline)[0])
        return total

    def roll(self, day: date, bucket: int) -> bool:
        """Store a bucket's rollup once it settled, then its hour's; True once the hour's is stored.

        Each writer rolls up the buckets it wrote: a process reads back only its own rows, and an
        hour's rollup then reads the hour's bucket rollups, not its rows.
        """
        try:
            row = self._index_row(day, bucket)
            since = self._settled(slot_end(day, bucket), row)
            stale = row is not None and (row.counted_at is None or _utc(row.counted_at) < since)
            if stale and datetime.now(UTC) >= since:
                self._bucket(day, row, time.monotonic() + 60, must_store=True)
            hour = hour_of(bucket)
            summary = self._index_row(day, hour_row(hour))
            since = self._settled(hour_end(day, hour), summary)
            if summary is not None and summary.counted_at is not None and _utc(summary.counted_at) >= since:
                return True
            if datetime.now(UTC) < since:
                return False
            written_at = summary.written_at if summary else None
            return self._hour(day, hour, written_at, time.monotonic() + 60, must_store=True)[1]
        except UNREACHABLE:
            return False  # a replica is down or slow: the next pass tries again

    # --- internals ------------------------------------------------------------------------------
    @staticmethod
    def _settled(end: datetime, row) -> datetime:
        """From when a rollup may be stored: SETTLE after its period and its last mark."""
        return max(end, _utc(row.written_at if row is not None else None)) + SETTLE

    def _index_row(self, day: date, bucket: int):
        """A row of buckets_by_day at ALL: a rollup stored from it must not miss a late mark."""
        statement = self._one.bind((day, bucket))
        statement.consistency_level = ConsistencyLevel.ALL
        return self._session.execute(statement).one()

    def _hour(
        self, day: date, hour: int, written_at, deadline: float, must_store: bool = False
    ) -> tuple[dict[str, int], bool]:
        """An hour's counts from its buckets, and whether they were stored as its rollup (only when
        the hour had settled at the start and every bucket was counted at ALL)."""
        started = datetime.now(UTC)
        settled = started >= max(hour_end(day, hour), _utc(written_at)) + SETTLE
        start = hour * BUCKETS_PER_HOUR
        statement = self._hour_buckets.bind((day, start, start + BUCKETS_PER_HOUR))
        statement.consistency_level = ConsistencyLevel.ALL if settled else statement.consistency_level
        try:
            rows = list(self._session.execute(statement))
        except UNREACHABLE:
            if must_store or not settled:
                raise
            settled = False  # the buckets one replica knows: an answer, not a rollup
            rows = list(self._session.execute(self._hour_buckets, (day, start, start + BUCKETS_PER_HOUR)))
        total: dict[str, int] = {}
        complete = True
        for row in rows:
            if row.counted_at is not None and _utc(row.counted_at) >= self._settled(slot_end(day, row.bucket), row):
                _add(total, row.counts)
                continue
            if time.monotonic() > deadline:
                raise CountBudgetExceeded("the buckets counted meanwhile are kept, so a retry goes further")
            counts, stored = self._bucket(day, row, deadline, must_store)
            complete = complete and stored
            _add(total, counts)
        stored = settled and complete and self._put(day, hour_row(hour), total, started, must_store)
        return total, stored

    def _bucket(self, day: date, row, deadline: float, must_store: bool) -> tuple[dict[str, int], bool]:
        """A bucket's counts from its rows, and whether they were stored as its rollup."""
        started = datetime.now(UTC)
        settled = started >= self._settled(slot_end(day, row.bucket), row)
        statement = self._labels.bind((day, row.bucket))
        if settled:
            statement.consistency_level = ConsistencyLevel.ALL
        try:
            counts = self._read(statement, deadline)
        except UNREACHABLE:
            if must_store or not settled:
                raise
            # A replica is down or slow: answer from the replicas that are up, store nothing.
            return self._read(self._labels.bind((day, row.bucket)), deadline), False
        return counts, settled and self._put(day, row.bucket, counts, started, must_store)

    def _put(self, day: date, bucket: int, counts: dict[str, int], started: datetime, must_store: bool) -> bool:
        """Store a rollup; a request that cannot still has its answer (the rollup comes later)."""
        # The timestamp is the count's start: of two counts, the later-started one wins.
        stamp = int(started.timestamp() * 1_000_000)
        try:
            self._session.execute(self._store, (stamp, counts, started, day, bucket))
        except (*UNREACHABLE, WriteTimeout):
            if must_store:
                raise
            return False
        return True

    def _read(self, statement, deadline: float) -> dict[str, int]:
        return count_labels(
            self._session, statement, deadline, "the buckets counted meanwhile are kept, so a retry goes further"
        )


def count_labels(session, statement, deadline: float, stopped: str) -> dict[str, int]:
    """Rows per label of a paged ``SELECT label`` statement; CountBudgetExceeded (saying
    ``stopped``) when a page is due past ``deadline``."""
    statement.fetch_size = PAGE_ROWS
    tally: dict[str, int] = {}
    result = session.execute(statement)
    while True:
        for row in result.current_rows:
            if row.label is not None:  # None: feedback whose prediction was never written
                tally[row.label] = tally.get(row.label, 0) + 1
        if not result.has_more_pages:
            return tally
        if time.monotonic() > deadline:
            raise CountBudgetExceeded(stopped)
        result.fetch_next_page()
