"""A day's counts kept fresh in the background: requests answer without reading, within bounds."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from fashion_classifier.predlog import counts_cache
from fashion_classifier.predlog.counts_cache import CountsCache

DAY = date(2026, 12, 1)


class Reads:
    """A count source whose answer the test sets, recording which thread read it."""

    def __init__(self) -> None:
        self.value = 1
        self.threads: list[str] = []
        self.error: Exception | None = None

    def __call__(self, day: date) -> dict[str, int]:
        self.threads.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error
        return {"Bag": self.value}


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.01)


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(counts_cache, "STALE", 2.0)


def test_a_watched_day_is_refreshed_in_the_background_and_answered_without_reading(fast):
    reads = Reads()
    cache = CountsCache(reads, fresh=0.05)
    try:
        assert cache.get(DAY) == {"Bag": 1}
        me = threading.current_thread().name
        assert reads.threads.count(me) == 1  # the first answer reads inline
        reads.value = 2
        wait_for(lambda: cache.get(DAY) == {"Bag": 2})
        assert reads.threads.count(me) == 1, "later requests read inline"
        assert reads.threads.count("predlog-counts") >= 1
    finally:
        cache.close()


def test_a_failing_refresh_lets_the_answer_age_until_requests_read_and_fail(fast):
    reads = Reads()
    cache = CountsCache(reads, fresh=0.05)
    try:
        cache.get(DAY)
        reads.error = RuntimeError("the cluster is down")
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="the cluster is down"):
            while True:  # the stored answer, until it is STALE old
                assert cache.get(DAY) == {"Bag": 1}
                time.sleep(0.02)
        assert time.monotonic() - started >= counts_cache.STALE - 0.5
    finally:
        cache.close()


def test_the_days_asked_for_last_are_watched_and_a_day_not_asked_for_is_dropped(monkeypatch):
    monkeypatch.setattr(counts_cache, "WATCH", 2.0)
    reads = Reads()
    cache = CountsCache(reads, fresh=0.05)
    try:
        days = [date(2026, 12, d) for d in range(1, counts_cache.MAX_WATCHED + 3)]
        for day in days:
            cache.get(day)
        assert set(cache._asked) == set(days[-counts_cache.MAX_WATCHED :])
        wait_for(lambda: not cache._asked)  # nobody asked again for WATCH seconds
        settled = len(reads.threads)
        time.sleep(0.3)
        assert len(reads.threads) == settled  # and nothing is read for them any more
    finally:
        cache.close()


def test_a_slow_read_that_finishes_last_does_not_bring_back_older_counts():
    cache = CountsCache(Reads())
    cache._store(DAY, 2.0, {"Bag": 105})  # started later, finished first
    cache._store(DAY, 1.0, {"Bag": 100})
    assert cache._entries[DAY] == (2.0, {"Bag": 105})
    cache.close()


def test_fresh_zero_reads_every_time():
    reads = Reads()
    cache = CountsCache(reads, fresh=0)
    for value in (1, 2, 3):
        reads.value = value
        assert cache.get(DAY) == {"Bag": value}
    assert len(reads.threads) == 3
    cache.close()
