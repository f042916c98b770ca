"""Writing off the request path: bounded queue → backend, spilling to the durable spool.

``submit`` only appends an item to a bounded in-memory queue (or, when the queue is full,
appends it to the spool file) and returns. One writer thread per process wakes every
``linger`` seconds, takes everything queued, and hands it to the backend's :class:`Sink` in
batches of about ``batch_size`` rows, with a bounded number of batches in flight. A batch the
backend rejects, or cannot take because it is down or too slow, goes to the spool; the same
thread replays spool files (this process's and those left by dead workers) once the backend is
writable again. The thread starts on ``start()`` or the first use, so it is created in each gunicorn
worker after the fork, never in the master.

Why not ``queue.Queue``: at the serving rates of a worker on two cores every microsecond on the
request thread counts. ``Queue.put`` costs a Python-level condition notify and ``qsize()`` two
more lock round trips per item; here ``submit`` is one uncontended lock and a deque append, and
the writer is never woken per item (the request thread never hands it the GIL by notifying it).

(Over 300 lines: the queue, the batching and the spool replay share one thread's state.)
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.items import Item, item_rows
from fashion_classifier.predlog.spool import Spool

log = logging.getLogger(__name__)

Done = Callable[[list[Item]], None]  # called once with the items that failed (empty = all written)


class Sink(Protocol):
    def writable(self) -> bool:
        """True when a write has a chance (session up); False sends batches to the spool."""

    def write(self, items: list[Item], done: Done) -> None:
        """Start writing ``items``; call ``done(failed)`` exactly once, from any thread."""

    def close(self) -> None: ...


def _rows(items: list[Item]) -> int:
    return sum(item_rows(item) for item in items)


class AsyncWriter:
    def __init__(
        self,
        sink_factory: Callable[[], Sink],
        spool_dir: Path,
        queue_size: int,
        batch_size: int = 500,
        linger: float = 0.2,
        max_in_flight: int = 8,
        slow_after: float = 2.0,
        replay_interval: float = 1.0,
        replay_timeout: float = 15.0,
    ) -> None:
        self._sink_factory = sink_factory
        self._spool_dir = Path(spool_dir)
        self._queue_size = queue_size  # rows (predictions), not requests
        self._batch_size = batch_size
        # The writer wakes this often and takes everything queued: one wake-up and a few
        # backend requests per interval instead of per prediction. It bounds how long a row
        # waits in memory (flush() and close() wake the writer at once).
        self._linger = linger
        self._max_in_flight = max_in_flight
        self._slow_after = slow_after  # seconds to wait for a free in-flight slot before spooling
        self._replay_interval = replay_interval
        self._replay_timeout = replay_timeout  # a replay write slower than this is retried later
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    # --- public ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start this process's writer thread and sink now rather than on the first ``submit``."""
        try:
            self._ensure_started()
        except Exception:  # the sink retries on the next submit; serving must not depend on it
            log.exception("prediction log: could not start the writer")

    def submit(self, item: Item, rows: int = 1) -> None:
        """Queue ``item`` (``rows`` predictions). Never blocks, never raises."""
        try:
            if self._pid != os.getpid():
                self._ensure_started()
            with self._lock:
                if self._queued_rows + rows <= self._queue_size:
                    self._queue.append(item)
                    self._queued_rows += rows
                    self._pending_rows += rows
                    metrics.IN_MEMORY.inc(rows)
                    return
            self._spool.append([item])  # full: straight to the durable spool, memory stays bounded
        except Exception:  # the request must not fail because of the log
            log.exception("prediction log: could not queue an item")

    @property
    def sink(self) -> Sink:
        self._ensure_started()
        return self._sink

    @property
    def queued_rows(self) -> int:
        """Rows waiting in memory for the writer thread (not yet handed to the backend)."""
        return self._queued_rows if self._pid == os.getpid() else 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or in flight (everything written or spooled)."""
        if self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending_rows == 0:
                self._spool.sync()
                return True
            self._wake.set()
            time.sleep(0.01)
        return False

    def replay_now(self) -> None:
        """Ask the writer thread to replay the spool at its next turn."""
        self._next_replay = 0.0
        if self._pid == os.getpid():
            self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (spooling what cannot be written in time) and stop the thread."""
        if self._pid != os.getpid() or self._closed:
            return
        self._closed = True
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        # Whatever is still queued or unanswered (the backend hung) goes to the spool so nothing
        # is lost; a write that still lands later is harmless, replay is idempotent.
        leftovers = self._take()
        if leftovers:
            self._spool.append(leftovers)
            self._settled(_rows(leftovers))
        with self._in_flight_lock:
            unanswered = [item for batch in self._pending.values() for item in batch]
            self._pending.clear()
        if unanswered:
            self._spool.append(unanswered)
        self._spool.close()
        self._sink.close()

    # --- internals ------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # Fresh state in this process: a forked child must not reuse its parent's thread or files.
            self._lock = threading.Lock()
            self._queue: collections.deque[Item] = collections.deque()
            self._queued_rows = 0  # rows in _queue
            self._pending_rows = 0  # rows queued or in flight: what flush() waits for
            self._spool = Spool(self._spool_dir)
            self._slots = threading.BoundedSemaphore(self._max_in_flight)
            self._in_flight = 0
            self._pending: dict[int, list[Item]] = {}  # batches handed to the sink, by id()
            self._in_flight_lock = threading.Lock()
            self._stop = threading.Event()
            self._wake = threading.Event()
            self._next_replay = 0.0
            self._sink = self._sink_factory()
            self._thread = threading.Thread(target=self._run, name="predlog-writer", daemon=True)
            self._pid = os.getpid()
            self._closed = False
            self._thread.start()

    def _take(self) -> list[Item]:
        """Everything queued; the caller settles its rows once they are sent or spooled."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
        return items

    def _settled(self, rows: int) -> None:
        """``rows`` left the writer's hands: written, failed into the spool, or spooled."""
        with self._lock:
            self._pending_rows -= rows
            metrics.IN_MEMORY.dec(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception:  # keep the thread alive whatever a backend does
                log.exception("prediction log: writer turn failed")
                time.sleep(0.5)

    def _turn(self) -> None:
        self._wake.wait(self._linger)
        self._wake.clear()
        items = self._take()
        # The depth this turn found: with a steady load, rows per linger interval; growing when
        # the backend cannot keep up (then batches spill to the spool instead of memory).
        metrics.QUEUE_DEPTH.set(_rows(items))
        chunk: list[Item] = []
        rows = 0
        for item in items:
            chunk.append(item)
            rows += item_rows(item)
            if rows >= self._batch_size:
                self._send_settled(chunk, rows)
                chunk, rows = [], 0
        if chunk:
            self._send_settled(chunk, rows)
        self._spool.sync()
        if time.monotonic() >= self._next_replay:
            self._next_replay = time.monotonic() + self._replay_interval
            if self._sink.writable():
                self._replay()

    def _send_settled(self, batch: list[Item], rows: int) -> None:
        try:
            self._send(batch, rows)
        except Exception:
            log.exception("prediction log: could not send a batch; it goes to the spool")
            self._spool.append(batch)
            self._settled(rows)

    def _send(self, batch: list[Item], rows: int) -> None:
        if not self._sink.writable():
            self._spool.append(batch)
            self._settled(rows)
            return
        if not self._slots.acquire(timeout=self._slow_after):
            self._spool.append(batch)  # the backend is too slow: keep memory bounded
            self._settled(rows)
            return
        with self._in_flight_lock:
            self._in_flight += 1
            self._pending[id(batch)] = batch

        def done(failed: list[Item]) -> None:
            with self._in_flight_lock:
                if self._pending.pop(id(batch), None) is None:
                    failed = []  # close() already spooled this batch
            try:
                if failed:
                    self._spool.append(failed)  # first: nothing below may stand between rows and the spool
                failed_rows = min(_rows(failed), rows) if failed else 0
                metrics.WRITTEN.inc(rows - failed_rows)
                if failed_rows:
                    metrics.WRITE_ERRORS.inc(failed_rows)
            finally:
                self._slots.release()
                self._release_flight()
                self._settled(rows)

        try:
            self._sink.write(batch, done)
        except Exception:
            log.exception("prediction log: write could not start")
            done(batch)

    def _release_flight(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    def _replay(self) -> None:
        # Move this process's own spooled items into a claimable file first.
        if self._spool.active_rows:
            self._spool.rotate()
        for claimed in self._spool.claim():
            ok = True
            for chunk in claimed.chunks(self._batch_size):
                failed = self._write_and_wait(chunk)
                if failed is None or failed:
                    ok = False
                    break
                rows = _rows(chunk)
                metrics.REPLAYED.inc(rows)
                metrics.WRITTEN.inc(rows)
            if ok:
                log.info("prediction log: replayed %s (%d rows)", claimed.path.name, claimed.rows)
                claimed.done()
            else:
                claimed.release()
                return
            if self._stop.is_set():
                return

    def _write_and_wait(self, items: list[Item]) -> list[Item] | None:
        """Synchronous write for replay; the failed items, or None when it did not finish in time."""
        finished = threading.Event()
        result: list[list[Item]] = []

        def done(failed: list[Item]) -> None:
            result.append(failed)
            finished.set()

        try:
            self._sink.write(items, done)
        except Exception:
            log.exception("prediction log: replay write could not start")
            return None
        if not finished.wait(self._replay_timeout):
            return None
        if result[0]:
            metrics.WRITE_ERRORS.inc(_rows(result[0]))
        return result[0]
