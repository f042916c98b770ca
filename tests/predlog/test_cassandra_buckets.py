"""Where a prediction lives: the (day, bucket) arithmetic, against its definition."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from fashion_classifier.predlog.cassandra_buckets import (
    BUCKETS_PER_DAY,
    SHARDS,
    Placer,
    hour_of,
    hour_row,
    last_bucket_at_or_before,
    place,
    shard_of,
    slot_end,
)
from fashion_classifier.predlog.cassandra_history import newest_first
from fashion_classifier.timeuuid import TimeIds, moment

from .conftest import id_at


def test_a_bucket_is_the_minute_of_the_id_times_the_shards_plus_its_shard():
    rng = random.Random(5)
    start = datetime(2026, 3, 4, tzinfo=UTC)
    for _ in range(2000):
        at = start + timedelta(seconds=rng.uniform(0, 3 * 86_400))
        pid = id_at(at, rng.getrandbits(64))
        day, bucket = place(pid)
        made = moment(pid)
        assert day == made.date() and 0 <= bucket < BUCKETS_PER_DAY
        assert bucket // SHARDS == made.hour * 60 + made.minute and bucket % SHARDS == shard_of(pid)
        assert slot_end(day, bucket) - timedelta(minutes=1) <= made < slot_end(day, bucket)
        assert hour_of(bucket) == made.hour and hour_row(hour_of(bucket)) < 0


def test_the_placer_agrees_with_place_across_minutes_days_and_processes():
    placer = Placer()
    rng = random.Random(6)
    lows = [rng.getrandbits(64) for _ in range(3)]
    start = datetime(2026, 3, 4, 23, 58, tzinfo=UTC)
    for i in range(3000):
        pid = id_at(start + timedelta(milliseconds=i * 97), lows[(i // 7) % 3])
        assert (placer.bucket(pid), placer.day) == place(pid)[::-1]


def test_one_process_writes_one_shard_and_processes_spread_over_all():
    ids = TimeIds().take(50)
    assert len({shard_of(i) for i in ids}) == 1
    shards = {shard_of(TimeIds().take(1)[0]) for _ in range(400)}
    assert shards == set(range(SHARDS))


def test_a_page_continues_in_the_minute_of_its_last_id():
    pid = uuid.uuid1()
    _, bucket = place(pid)
    upper = last_bucket_at_or_before(pid)
    assert upper // SHARDS == bucket // SHARDS and upper % SHARDS == SHARDS - 1


def test_newest_first_orders_by_time_then_by_signed_bytes():
    low = 0x8000_0000_0000_0000
    at = datetime(2026, 3, 4, tzinfo=UTC)
    older, newer = id_at(at, low | 0x7F), id_at(at + timedelta(microseconds=1), low)
    assert newest_first(older) < newest_first(newer)
    # Same time: the low bytes compare as signed bytes (0x80 < 0x7f), as Cassandra's TimeUUIDType.
    a, b = id_at(at, low | 0x80), id_at(at, low | 0x7F)
    assert newest_first(a) < newest_first(b)
