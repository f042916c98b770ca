"""Version-1 (time-based) UUIDs: the prediction ids, made fast, and the time inside them.

A prediction id is a timeuuid: Cassandra orders a day's rows by it, and the day partition of a row
comes from it, so the web layer (which makes ids) and the prediction log (which files them) share
this arithmetic. Times are 100 ns ticks since 1582-10-15, as RFC 4122 counts them.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

EPOCH_TICKS = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 to 1970-01-01
_EPOCH = datetime(1582, 10, 15, tzinfo=UTC)


class TimeIds:
    """Version-1 UUIDs, cheap and unique across workers.

    ``uuid.uuid1()`` goes through libuuid's clock file (a file lock per id); these are built
    from the clock directly: 60-bit timestamp in 100-ns steps, strictly increasing within the
    process (a batch takes consecutive steps), a random clock sequence and a random node with
    the multicast bit set, as RFC 4122 prescribes for random nodes. The random parts are drawn
    again after a fork, so gunicorn workers never collide.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._low_bits = 0  # variant, clock sequence and node: the UUID's lower 64 bits
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> list[uuid.UUID]:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            clock_seq = secrets.randbits(14)
            node = secrets.randbits(48) | (1 << 40)
            self._low_bits = (0x8000 | clock_seq) << 48 | node
        with self._lock:
            start = max(time.time_ns() // 100 + EPOCH_TICKS, self._last + 1)
            self._last = start + n - 1
        low = self._low_bits
        ids = []
        for ts in range(start, start + n):
            high = (ts & 0xFFFFFFFF) << 32 | ((ts >> 32) & 0xFFFF) << 16 | 0x1000 | (ts >> 48) & 0x0FFF
            ids.append(_from_int(high << 64 | low))
        return ids


def _from_int(
    value: int, _new=object.__new__, _set=object.__setattr__, _cls=uuid.UUID, _safe=uuid.SafeUUID.unknown
) -> uuid.UUID:
    """``uuid.UUID(int=value)`` without its argument checks, which are the costly part (a batch
    makes one id per image). ``value`` is a valid 128-bit version-1 UUID by construction."""
    made = _new(_cls)
    _set(made, "int", value)
    _set(made, "is_safe", _safe)
    return made


def at_ticks(ticks_: int, low: int) -> uuid.UUID:
    """The version-1 uuid of timestamp ``ticks_`` whose lower 64 bits (variant, clock sequence and
    node) are ``low``: the ids of one process at a given time, for tests and synthetic loads."""
    high = (ticks_ & 0xFFFFFFFF) << 32 | ((ticks_ >> 32) & 0xFFFF) << 16 | 0x1000 | (ticks_ >> 48) & 0x0FFF
    return uuid.UUID(int=high << 64 | low)


def ticks(value: uuid.UUID) -> int:
    """The 60-bit timestamp of a version-1 uuid (``value.time`` without the property's cost)."""
    n = value.int
    return ((n >> 64) & 0x0FFF) << 48 | ((n >> 80) & 0xFFFF) << 32 | (n >> 96)


def moment(value: uuid.UUID) -> datetime | None:
    """The UTC time inside a version-1 uuid, None for other versions."""
    if value.version != 1:
        return None
    return _EPOCH + timedelta(microseconds=value.time // 10)


def is_recent(value: uuid.UUID, seconds: float) -> bool:
    """True for a version-1 uuid made in the last ``seconds`` (or up to 1 s ahead: clock steps)."""
    if value.version != 1:
        return False
    made = (value.time - EPOCH_TICKS) / 1e7
    return -1.0 <= time.time() - made <= seconds
