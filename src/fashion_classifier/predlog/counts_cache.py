"""A day's counts kept fresh in the background while clients ask for them.

A worker serves one request at a time, so a count read that waits on the cluster holds every
connection of the worker with it. Instead, the MAX_WATCHED days asked for most recently (within
WATCH seconds) are read again by a thread every FRESH seconds (longer when reads are slow: the
thread spends at most about a fifth of its time reading), and requests answer from the last read
while it is younger than STALE. A request still reads inline, and gets the read's error, for a
day's first request, for a day no longer watched, and once reads fail or fall behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date

log = logging.getLogger(__name__)

FRESH = 1.0  # s between two background reads of a watched day; an unwatched day's reuse
STALE = 5.0  # s an answer of a watched day may be old
WATCH = 60.0  # s a day stays watched after it was last asked for
MAX_WATCHED = 4
MAX_ENTRIES = 64


class CountsCache:
    def __init__(self, read: Callable[[date], dict[str, int]], fresh: float = FRESH) -> None:
        self._read = read  # may raise: inline, its error is the request's
        self.fresh = fresh  # 0: every request reads (tests)
        self._entries: dict[date, tuple[float, dict[str, int]]] = {}  # day -> (read started, counts)
        self._asked: dict[date, float] = {}  # watched day -> last asked
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def get(self, day: date) -> dict[str, int]:
        if not self.fresh:
            return self._read(day)
        now = time.monotonic()
        watched = self._touch(day, now)
        entry = self._entries.get(day)
        if entry is not None and now - entry[0] < (STALE if watched else self.fresh):
            return dict(entry[1])
        counts = self._read(day)
        self._store(day, now, counts)
        return dict(counts)

    def close(self) -> None:
        self._stop.set()

    def _touch(self, day: date, now: float) -> bool:
        """Mark the day asked for; whether it was watched already. A day not watched takes the
        place of the one asked for least recently."""
        with self._lock:
            watched = day in self._asked
            if not watched and len(self._asked) >= MAX_WATCHED:
                del self._asked[min(self._asked, key=self._asked.__getitem__)]
            self._asked[day] = now
            if self._thread is None:
                self._thread = threading.Thread(target=self._refresh, name="predlog-counts", daemon=True)
                self._thread.start()
        return watched

    def _store(self, day: date, started: float, counts: dict[str, int]) -> None:
        """Keep the read that started last: a slow read finishing late must not bring back older counts."""
        with self._lock:
            entry = self._entries.get(day)
            if entry is not None and entry[0] > started:
                return
            if entry is None and len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[day] = (started, counts)

    def _refresh(self) -> None:
        pause = self.fresh
        while not self._stop.wait(pause):
            began = time.monotonic()
            with self._lock:
                for day in [d for d, asked in self._asked.items() if began - asked > WATCH]:
                    del self._asked[day]
                days = list(self._asked)
            for day in days:
                started = time.monotonic()
                try:
                    self._store(day, started, self._read(day))
                except Exception as exc:  # noqa: BLE001 - a request reading inline gets the error
                    log.debug("prediction log: refreshing the counts of %s failed: %s", day, exc)
            pause = max(self.fresh, 4 * (time.monotonic() - began))
