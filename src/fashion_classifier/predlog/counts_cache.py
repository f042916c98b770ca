"""A day's counts kept fresh in the background while clients ask for them.

A worker serves one request at a time, so a count read that waits on the cluster holds every
connection of the worker with it. Instead, a day asked for in the last WATCH seconds is read
again by a thread every FRESH seconds (longer when a read is slow: the thread spends at most
about a fifth of its time reading), and requests answer from the last read while it is younger
than STALE. A read that fails or falls behind leaves the entry to age: requests then read inline,
and get its error. At most MAX_WATCHED days are kept fresh; others are reused for FRESH seconds.
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
        watched = day in self._asked
        if watched:
            self._asked[day] = now
        entry = self._entries.get(day)
        if entry is not None and now - entry[0] < (STALE if watched else self.fresh):
            return dict(entry[1])
        counts = self._read(day)
        self._store(day, now, counts)
        if not watched:
            self._watch(day, now)
        return dict(counts)

    def close(self) -> None:
        self._stop.set()

    def _store(self, day: date, started: float, counts: dict[str, int]) -> None:
        if len(self._entries) >= MAX_ENTRIES and day not in self._entries:
            self._entries.clear()
        self._entries[day] = (started, counts)

    def _watch(self, day: date, now: float) -> None:
        with self._lock:
            if len(self._asked) >= MAX_WATCHED:
                return
            self._asked[day] = now
            if self._thread is None:
                self._thread = threading.Thread(target=self._refresh, name="predlog-counts", daemon=True)
                self._thread.start()

    def _refresh(self) -> None:
        pause = self.fresh
        while not self._stop.wait(pause):
            pause = self.fresh
            for day, asked in list(self._asked.items()):
                started = time.monotonic()
                if started - asked > WATCH:
                    with self._lock:
                        self._asked.pop(day, None)
                    continue
                try:
                    self._store(day, started, self._read(day))
                except Exception as exc:  # noqa: BLE001 - a request reading inline gets the error
                    log.debug("prediction log: refreshing the counts of %s failed: %s", day, exc)
                pause = max(pause, 4 * (time.monotonic() - started))
