"""The durable local spool: append-only JSON-lines files that survive a worker's death.

Each writer process appends to its own file and holds an exclusive ``flock`` on it while it
lives. A replayer in any process claims a file by taking that lock without waiting: it gets it
only for files whose writer has rotated them out or died (the kernel drops a dead process's
locks), so files of crashed gunicorn workers are replayed by their siblings or successors.
Appends are cheap (no fsync); :meth:`Spool.sync` fsyncs in batches from the writer thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.items import Item, item_rows
from fashion_classifier.predlog.spool_format import item_from_json, item_to_json, line_rows

log = logging.getLogger(__name__)

SUFFIX = ".ndjson"
# Files of versions that spooled a batch as one line per record. They are still replayed; the
# new suffix keeps such a version (after a rollback) from claiming files with batch lines, which
# it cannot read and would drop.
LEGACY_SUFFIX = ".jsonl"


class ClaimedFile:
    """A spool file this process holds the lock of, to be replayed and then removed."""

    def __init__(self, path: Path, handle, spool: Spool) -> None:
        self.path = path
        self._handle = handle
        self._spool = spool
        self.rows = 0
        self.size = os.fstat(handle.fileno()).st_size

    def chunks(self, size: int) -> Iterator[list[Item]]:
        """Items in file order, about ``size`` rows at a time; unreadable lines (a torn last
        write) are skipped."""
        self._handle.seek(0)
        chunk: list[Item] = []
        rows = 0
        for number, raw in enumerate(self._handle, start=1):
            try:
                item = item_from_json(raw.decode("utf-8"))
            except Exception:  # noqa: BLE001 - any line that cannot be read must not stop the file's replay
                log.warning("spool %s line %d is unreadable, skipped", self.path.name, number)
                continue
            chunk.append(item)
            rows += item_rows(item)
            if rows >= size:
                yield chunk
                chunk, rows = [], 0
        if chunk:
            yield chunk

    def count_rows(self) -> int:
        self._handle.seek(0)
        self.rows = sum(line_rows(raw) for raw in self._handle)
        return self.rows

    def done(self) -> None:
        """Everything was replayed: remove the file, then drop the lock."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._close()

    def release(self) -> None:
        """Replay failed part-way: keep the file for a later attempt (writes are idempotent)."""
        self._spool._remember(self)
        self._close()

    def _close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
            self._spool._forget_claim(self)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._handle = None
        self._path: Path | None = None
        self._rows = 0
        self._bytes = 0
        self._dirty = False
        self._claimed: list[ClaimedFile] = []
        # Files this process released after a failed replay: still spooled, still counted.
        self._released: dict[Path, tuple[int, int]] = {}

    # --- writing (any thread) --------------------------------------------------------------
    def append(self, items: list[Item]) -> bool:
        """Append items, one line each; False (and logged) when the disk refuses them."""
        if not items:
            return True
        data = "".join(item_to_json(item) + "\n" for item in items).encode("utf-8")
        rows = sum(item_rows(item) for item in items)
        with self._lock:
            try:
                handle = self._active()
                handle.write(data)
                handle.flush()
            except OSError as exc:
                log.error("prediction log: spool write failed, %d row(s) lost: %s", rows, exc)
                metrics.WRITE_ERRORS.inc(rows)
                return False
            self._rows += rows
            self._bytes += len(data)
            self._dirty = True
        metrics.SPOOLED.inc(rows)
        self._update_gauges()
        return True

    def sync(self) -> None:
        """fsync the active file if anything was appended since the last call."""
        with self._lock:
            if not self._dirty or self._handle is None:
                return
            try:
                os.fsync(self._handle.fileno())
            except OSError as exc:
                log.error("prediction log: spool fsync failed: %s", exc)
            self._dirty = False

    def rotate(self) -> None:
        """Close the active file (it becomes claimable) so its items can be replayed."""
        with self._lock:
            self._close_active()
        self._update_gauges()

    def close(self) -> None:
        self.rotate()
        for claimed in list(self._claimed):
            claimed.release()

    @property
    def active_rows(self) -> int:
        return self._rows

    # --- replaying --------------------------------------------------------------------------
    def claim(self) -> Iterator[ClaimedFile]:
        """Spool files no live writer holds, locked for this process, oldest first."""
        try:
            paths = sorted([*self.directory.glob("*" + SUFFIX), *self.directory.glob("*" + LEGACY_SUFFIX)], key=_mtime)
        except OSError:
            return
        for path in paths:
            try:
                handle = open(path, "rb")  # noqa: SIM115 - lives as long as the claim
            except OSError:
                continue
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()  # its writer is alive, or another replayer has it
                continue
            if os.fstat(handle.fileno()).st_nlink == 0:
                handle.close()  # replayed and removed by another process meanwhile
                continue
            claimed = ClaimedFile(path, handle, self)
            with self._lock:
                self._released.pop(path, None)
            if claimed.size == 0:
                claimed.done()
                continue
            claimed.count_rows()
            with self._lock:
                self._claimed.append(claimed)
            self._update_gauges()
            yield claimed

    def _remember(self, claimed: ClaimedFile) -> None:
        with self._lock:
            self._released[claimed.path] = (claimed.rows, claimed.size)

    def _forget_claim(self, claimed: ClaimedFile) -> None:
        with self._lock:
            if claimed in self._claimed:
                self._claimed.remove(claimed)
        self._update_gauges()

    # --- internals ------------------------------------------------------------------------------
    def _active(self):
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
            path = self.directory / name
            # Lock under a name replayers do not look at, then rename: a replayer must never
            # catch the new empty file unlocked and remove it.
            hidden = self.directory / ("." + name + ".new")
            handle = open(hidden, "ab")  # noqa: SIM115 - held open while this writer lives
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, path)
            self._handle, self._path = handle, path
        return self._handle

    def _close_active(self) -> None:
        if self._handle is None:
            return
        try:
            if self._dirty:
                os.fsync(self._handle.fileno())
        except OSError as exc:
            log.error("prediction log: spool fsync failed: %s", exc)
        self._handle.close()  # drops the flock: the file is now claimable
        if self._rows == 0 and self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
        self._handle, self._path = None, None
        self._rows = self._bytes = 0
        self._dirty = False

    def _update_gauges(self) -> None:
        with self._lock:
            # another process may have replayed a file this one released
            for path in [p for p in self._released if not p.exists()]:
                del self._released[path]
            rows = self._rows + sum(c.rows for c in self._claimed) + sum(r for r, _ in self._released.values())
            size = self._bytes + sum(c.size for c in self._claimed) + sum(b for _, b in self._released.values())
        metrics.SPOOL_ROWS.set(rows)
        metrics.SPOOL_BYTES.set(size)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
