"""The UTC day a prediction belongs to: the day inside its time-based id.

Both backends file a row under this day, so a lookup by id finds it (SQLite's ``day`` column,
Cassandra's partition through ``cassandra_buckets``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, timedelta

from fashion_classifier import timeuuid
from fashion_classifier.predlog.base import PredictionRecord

_TICKS_PER_DAY = 86_400 * 10_000_000


class DayBuckets:
    """Day bucket of a uuid1 timestamp, computed once per day instead of once per row.

    Rows of a batch share a day except around midnight, so the last day's tick range is kept and
    a row costs two integer comparisons.
    """

    def __init__(self) -> None:
        self._start = self._end = -1
        self.day: date = date(1970, 1, 1)

    def of_ticks(self, ticks: int) -> date:
        if not self._start <= ticks < self._end:
            since_epoch = ticks - timeuuid.EPOCH_TICKS
            self._start = ticks - since_epoch % _TICKS_PER_DAY
            self._end = self._start + _TICKS_PER_DAY
            self.day = date(1970, 1, 1) + timedelta(days=since_epoch // _TICKS_PER_DAY)
        return self.day


def day_of(rec: PredictionRecord) -> date:
    """The day bucket of a record: the day of its timeuuid, so a lookup by id can find it.

    Falls back to ``created_at`` for ids that carry no time (not expected from the web layer).
    """
    return day_of_id(rec.id) or rec.created_at.astimezone(UTC).date()


def day_of_id(prediction_id: uuid.UUID) -> date | None:
    made = timeuuid.moment(prediction_id)
    return made.date() if made else None
