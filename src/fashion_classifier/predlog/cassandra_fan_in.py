"""Running the statements of one writer batch concurrently and reporting, once, what failed.

Each :class:`Send` is a statement with the queued items it carries; :class:`FanIn` sends them all
with ``execute_async`` and calls the writer's ``done`` with the items of the statements that
failed (to be spooled), except rows the cluster rejected for good, which are logged and dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cassandra import InvalidRequest
from cassandra.query import BatchStatement, Statement

from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.items import Item, item_rows
from fashion_classifier.predlog.writer import Done

log = logging.getLogger(__name__)


class Send:
    """A statement, the queued items it carries (spooled if it fails), and what to do once it
    succeeded."""

    __slots__ = ("items", "on_ok", "statement")

    def __init__(self, statement: Statement, items: list[Item], on_ok: Callable[[], None] | None = None) -> None:
        self.statement = statement
        self.items = items
        self.on_ok = on_ok


class FanIn:
    """Runs several batches concurrently and reports the items of those that failed, once.

    The driver keeps each finished ``ResponseFuture`` (with its message and callbacks) in a
    reference cycle with its timer, which only Python's cyclic GC frees. Rows those futures reached
    were promoted to the oldest generation and made full collections frequent and long (pauses
    that set a logging server's p99). So each batch's rows are released when its future settles,
    and the rest once the last one has.
    """

    def __init__(self, session, groups: list[Send], done: Done) -> None:
        self._session = session
        self._groups = groups
        self._done: Done | None = done
        self._pending = len(groups)
        self._failed: list[Item] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        if not self._groups:
            self._report()
            return
        for index, send in enumerate(self._groups):
            try:
                future = self._session.execute_async(send.statement)
            except Exception as exc:  # e.g. NoHostAvailable raised synchronously
                self._finish(index, exc)
                continue
            future.add_callbacks(self._ok, self._error, callback_args=(index,), errback_args=(index,))

    def _ok(self, _rows, index: int) -> None:
        self._finish(index, None)

    def _error(self, exc: Exception, index: int) -> None:
        self._finish(index, exc)

    def _finish(self, index: int, exc: Exception | None) -> None:
        send = self._groups[index]
        statement, items = send.statement, send.items
        if exc is None and send.on_ok is not None:
            send.on_ok()
        if isinstance(statement, BatchStatement):
            statement.clear()  # the future's message shares this list of bound rows
        if exc is not None:
            if isinstance(exc, InvalidRequest):
                # The cluster will never accept these rows (e.g. a malformed value): spooling
                # them would block the replay forever, so they are logged and dropped.
                rows = sum(item_rows(item) for item in items)
                log.error("prediction log: Cassandra rejected %d row(s): %s", rows, exc)
                metrics.WRITE_ERRORS.inc(rows)
            else:
                log.debug("prediction log: write failed (%s), %d item(s) to the spool", exc, len(items))
        with self._lock:
            if exc is not None and not isinstance(exc, InvalidRequest):
                self._failed.extend(items)
            self._pending -= 1
            last = self._pending == 0
        if last:
            self._report()

    def _report(self) -> None:
        # A batch split over several statements is in the items of each: report it once, or
        # it would be spooled (and counted) once per failed statement.
        failed = list({id(item): item for item in self._failed}.values())
        done, self._done = self._done, None
        self._groups, self._failed = [], []
        if done is not None:  # None only if called twice, which _pending rules out
            done(failed)
