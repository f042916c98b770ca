from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from fashion_classifier import timeuuid
from fashion_classifier.predlog.days import day_of, day_of_id

from .conftest import make_record


def test_day_comes_from_the_timeuuid():
    moment = datetime(2026, 3, 4, 23, 59, 59, tzinfo=UTC)
    ticks = int((moment - datetime(1582, 10, 15, tzinfo=UTC)).total_seconds() * 10_000_000)
    pid = uuid.UUID(fields=(ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, (ticks >> 48) | 0x1000, 0x80, 0, 1))
    assert pid.version == 1
    assert timeuuid.moment(pid) == moment
    assert day_of_id(pid) == date(2026, 3, 4)
    # created_at a moment later (next day) does not move the row away from its id's day
    rec = make_record(id=pid, created_at=datetime(2026, 3, 5, 0, 0, 0, 1, tzinfo=UTC))
    assert day_of(rec) == date(2026, 3, 4)


def test_random_uuid_has_no_day():
    assert day_of_id(uuid.uuid4()) is None


def test_uuid_ticks_is_the_uuid_time():
    for _ in range(100):
        value = uuid.uuid1()
        assert timeuuid.ticks(value) == value.time
