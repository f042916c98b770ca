"""Where a prediction lives in Cassandra: its (day, bucket) partition, computed from its id alone.

A day is split into one-minute slots and each slot into SHARDS shards. The slot comes from the
time inside the id, the shard from the id's clock sequence and node, which the web layer draws
at random once per worker process (``timeuuid.TimeIds``). So:

* a lookup by id is one read (the partition follows from the id);
* one process writes one partition per minute, and a writer batch is one partition (two across a
  minute boundary): unlogged batches stay single-partition mutations;
* concurrent processes spread over SHARDS partitions, hence over the ring's nodes;
* ``bucket = slot * SHARDS + shard`` orders a day's buckets by time, so the bucket index
  (``buckets_by_day``) read newest first gives the partitions to merge for a history page.

Both numbers are part of the schema: changing them needs a new table. docs/prediction-log.md
derives them (partition size at 10x the benchmarked rate).
"""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, date, datetime, timedelta

from fashion_classifier import timeuuid

SLOT_SECONDS = 60
SHARDS = 8
SLOTS_PER_DAY = 86_400 // SLOT_SECONDS
BUCKETS_PER_DAY = SLOTS_PER_DAY * SHARDS
BUCKETS_PER_HOUR = 3600 // SLOT_SECONDS * SHARDS
TICKS_PER_SLOT = SLOT_SECONDS * 10_000_000
TICKS_PER_DAY = 86_400 * 10_000_000

_EPOCH_DAY = date(1970, 1, 1)
_LOW_48 = (1 << 48) - 1
_int32 = struct.Struct(">i").pack
_uint32 = struct.Struct(">I").pack
_DATE_OFFSET_DAYS = 2**31  # CQL date: unsigned days since 1970-01-01, centred at 2^31


def shard_of(prediction_id: uuid.UUID) -> int:
    """The shard of an id: its clock sequence and node (random per writer process), hashed."""
    n = prediction_id.int
    return (((n >> 48) & 0x3FFF) ^ (n & _LOW_48)) % SHARDS


def place(prediction_id: uuid.UUID) -> tuple[date, int]:
    """(day, bucket) of a version-1 id."""
    since = timeuuid.ticks(prediction_id) - timeuuid.EPOCH_TICKS
    day, rest = divmod(since, TICKS_PER_DAY)
    return _EPOCH_DAY + timedelta(days=day), (rest // TICKS_PER_SLOT) * SHARDS + shard_of(prediction_id)


def slot_end(day: date, bucket: int) -> datetime:
    """When the minute of a bucket ends: rows arriving later are late (spool replays, retries)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(seconds=(bucket // SHARDS + 1) * SLOT_SECONDS)


def hour_of(bucket: int) -> int:
    return bucket // BUCKETS_PER_HOUR


def hour_row(hour: int) -> int:
    """The ``buckets_by_day`` row summing an hour's buckets: negative, so below every bucket."""
    return -1 - hour


def hour_end(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour + 1)


def last_bucket_at_or_before(prediction_id: uuid.UUID) -> int:
    """The highest bucket of the id's slot: every shard of that minute may hold older rows."""
    _day, bucket = place(prediction_id)
    return bucket - bucket % SHARDS + SHARDS - 1


def day_bytes(day: date) -> bytes:
    return _uint32((day - _EPOCH_DAY).days + _DATE_OFFSET_DAYS)


def routing_key(day_value: bytes, bucket_value: bytes) -> bytes:
    """The serialized composite partition key (day, bucket), as the driver routes a statement."""
    return b"".join((b"\x00\x04", day_value, b"\x00\x00\x04", bucket_value, b"\x00"))


class Placer:
    """``place()`` for a stream of ids, cheap per row: rows of a batch share a day and a slot
    except across a boundary, so the last slot's tick range is kept, and consecutive ids of one
    process share their low 64 bits, so the last shard is kept too."""

    def __init__(self) -> None:
        self._start = self._end = -1
        self._low = -1
        self._shard = 0
        self._slot_base = 0
        self.day = _EPOCH_DAY
        self.day_value = day_bytes(_EPOCH_DAY)

    def bucket(self, prediction_id: uuid.UUID) -> int:
        """The bucket of the id; ``self.day`` and ``self.day_value`` are then its day."""
        n = prediction_id.int
        ticks = ((n >> 64) & 0x0FFF) << 48 | ((n >> 80) & 0xFFFF) << 32 | (n >> 96)
        if not self._start <= ticks < self._end:
            since = ticks - timeuuid.EPOCH_TICKS
            day, rest = divmod(since, TICKS_PER_DAY)
            self._start = ticks - rest % TICKS_PER_SLOT
            self._end = self._start + TICKS_PER_SLOT
            self._slot_base = (rest // TICKS_PER_SLOT) * SHARDS
            new_day = _EPOCH_DAY + timedelta(days=day)
            if new_day != self.day:
                self.day, self.day_value = new_day, day_bytes(new_day)
        low = n & 0xFFFFFFFFFFFFFFFF
        if low != self._low:
            self._low, self._shard = low, (((n >> 48) & 0x3FFF) ^ (n & _LOW_48)) % SHARDS
        return self._slot_base + self._shard


def bucket_bytes(bucket: int) -> bytes:
    return _int32(bucket)
