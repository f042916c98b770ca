"""The prediction log in Apache Cassandra: the PredictionLog the web layer and the CLI use.

Writes go through an :class:`AsyncWriter` to the :class:`CassandraSink` (``cassandra_sink``),
which spools what fails. Reads run on the request thread against the sink's per-process session:
history and lookups in ``cassandra_history``, counts from rollups in ``cassandra_counts`` (kept
fresh in the background while asked for: ``counts_cache``). They
raise :class:`PredictionLogUnavailable` until connected or when the cluster cannot answer. A
background thread rolls up the count of each bucket this process wrote once it has settled.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from cassandra import DriverException, RequestExecutionException
from cassandra.cluster import NoHostAvailable

from fashion_classifier.config import Settings
from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.backend import Backend
from fashion_classifier.predlog.base import InvalidPageState, Page, PredictionLogUnavailable, PredictionRecord
from fashion_classifier.predlog.cassandra_counts import CountBudgetExceeded, Rollups, count_labels
from fashion_classifier.predlog.cassandra_history import History
from fashion_classifier.predlog.cassandra_schema import check_keyspace_name, legacy_read_until
from fashion_classifier.predlog.cassandra_sink import CassandraSink
from fashion_classifier.predlog.counts_cache import CountsCache
from fashion_classifier.predlog.page_tokens import decode_signed_token, encode_signed_token, token_key
from fashion_classifier.predlog.records import record_from_row

log = logging.getLogger(__name__)

RECENT_DAYS = 7  # how far back recent() looks
ROLLUP_EVERY = 15.0  # seconds between two passes of the rollup thread
LEGACY_CHECK_EVERY = 60.0  # seconds between two checks for rows in the tables of migration 1
_READ_ERRORS = (DriverException, RequestExecutionException, NoHostAvailable, OSError)
# What a client is told when a read fails; the driver's error (hosts, internals) is the cause.
_READ_FAILED = "reading from Cassandra failed; retry shortly"


def _record(row, true_label: int | None) -> PredictionRecord:
    """The record of a driver row (a named tuple) with the true label found for it."""
    return record_from_row({**row._asdict(), "true_label": true_label})


class _Reads:
    """The read statements of one session (a reconnect makes a new session)."""

    def __init__(self, session, keyspace: str, ttl_days: int) -> None:
        self.session = session
        self._keyspace = keyspace
        self._ttl_days = ttl_days
        self.history = History(session, keyspace)
        self.rollups = Rollups(session, keyspace)
        self.check_legacy()

    def check_legacy(self) -> None:
        """Read the tables of migration 1 too while they may hold rows (asked again every minute).
        When the cluster cannot tell, they are read: a slower page, not a missing row."""
        self.checked = time.monotonic()
        try:
            until = legacy_read_until(self.session, self._keyspace, self._ttl_days)
        except _READ_ERRORS as exc:
            log.warning("prediction log: could not check the tables of migration 1 (%s); reading them", exc)
            self.history.legacy = self.history.has_legacy_tables
            return
        self.history.legacy = until is not None and datetime.now(UTC) < until


class CassandraLog(Backend):
    def __init__(self, settings: Settings) -> None:
        # Larger, rarer batches than the writer's defaults: the cluster's cost per mutation (commit
        # log entry, the message to the other replica, the acknowledgement) is shared by more rows,
        # and the JVMs take their CPU from the same two cores as the service. At most 2 batches in
        # flight (one turn's rows fit one batch at the measured peak): with the queue, that bounds
        # what a SIGKILLed worker loses to FC_QUEUE_SIZE + 2,000 rows.
        super().__init__(settings, lambda: CassandraSink(settings), batch_size=1000, linger=0.5, max_in_flight=2)
        self._keyspace = check_keyspace_name(settings.cassandra_keyspace)
        # A count that has to read rows (buckets not rolled up yet) stops here and answers 503
        # rather than hold the worker until gunicorn kills it at FC_TIMEOUT.
        self.count_budget = settings.timeout / 2
        # Page tokens are signed: a client can only hand back a position this service gave it.
        self._token_key = token_key(settings.api_token, settings.client_salt, self._keyspace)
        # A day's counts, kept fresh in the background while asked for: a dashboard polled by many
        # clients costs the cluster one read per worker and second, and no request waits for it.
        self.counts_cache = CountsCache(self._count_day)
        self._reads: _Reads | None = None
        self._reads_lock = threading.Lock()
        self._rolled: dict[tuple[date, int], datetime] = {}
        self._stop = threading.Event()
        self._roller = threading.Thread(target=self._roll_loop, name="predlog-rollup", daemon=True)

    # --- writing ----------------------------------------------------------------------------
    def start(self) -> None:
        super().start()  # the sink connects in its own thread
        self._roller.start()

    def record(self, rec: PredictionRecord) -> None:
        if rec.id.version != 1:
            # The id is the row's timeuuid; the cluster would reject it (and it has no day).
            log.error("prediction log: id %s is not a time-based uuid; not recorded", rec.id)
            metrics.WRITE_ERRORS.inc()
            return
        super().record(rec)

    def add_feedback(self, prediction_id: uuid.UUID, true_label: int) -> None:
        if prediction_id.version == 1:  # no prediction can have another id
            super().add_feedback(prediction_id, true_label)

    def close(self) -> None:
        self._stop.set()
        self.counts_cache.close()
        super().close()

    @property
    def connected(self) -> bool:
        return self._writer.sink.writable()

    # --- reading ----------------------------------------------------------------------------
    def get(self, prediction_id: uuid.UUID) -> PredictionRecord | None:
        if prediction_id.version != 1:
            return None
        reads = self._read_statements()
        try:
            found = reads.history.get(prediction_id)
        except _READ_ERRORS as exc:
            raise PredictionLogUnavailable(_READ_FAILED) from exc
        return None if found is None else _record(*found)

    def list_day(self, day: date, limit: int = 50, page_state: str | None = None) -> Page:
        before = self._position(day, page_state) if page_state else None
        reads = self._read_statements()
        try:
            rows, next_before, labels = reads.history.page(day, limit, before)
        except _READ_ERRORS as exc:
            raise PredictionLogUnavailable(_READ_FAILED) from exc
        token = None
        if next_before is not None:
            token = encode_signed_token({"d": day.isoformat(), "before": next_before.hex}, self._token_key)
        return Page(rows=[_record(row, labels.get(row.id)) for row in rows], page_state=token)

    def recent(self, limit: int = 50) -> list[PredictionRecord]:
        out: list[PredictionRecord] = []
        today = datetime.now(UTC).date()
        for back in range(RECENT_DAYS + 1):
            if len(out) >= limit:
                break
            out.extend(self.list_day(today - timedelta(days=back), limit - len(out)).rows)
        return out

    def counts(self, day: date) -> dict[str, int]:
        return self.counts_cache.get(day)

    def _count_day(self, day: date) -> dict[str, int]:
        reads = self._read_statements()
        deadline = time.monotonic() + self.count_budget
        try:
            tally = collections.Counter(reads.rollups.day(day, deadline))
            if reads.history.legacy:
                tally.update(self._legacy_counts(reads, day, deadline))
        except CountBudgetExceeded as exc:
            raise PredictionLogUnavailable(
                f"counting {day} stopped after {self.count_budget:g} s: {exc} (the "
                "fc_predictions_total metric counts predictions as they are made)"
            ) from None
        except _READ_ERRORS as exc:
            raise PredictionLogUnavailable(_READ_FAILED) from exc
        return dict(sorted(tally.items()))

    # --- internals ------------------------------------------------------------------------------
    def _read_statements(self) -> _Reads:
        session = self._writer.sink.session
        if session is None:
            raise PredictionLogUnavailable("not connected to Cassandra yet")
        reads = self._reads
        if reads is None or reads.session is not session:
            with self._reads_lock:
                reads = self._reads
                if reads is None or reads.session is not session:
                    try:
                        reads = self._reads = _Reads(session, self._keyspace, self._settings.cassandra_ttl_days)
                    except _READ_ERRORS as exc:
                        raise PredictionLogUnavailable(_READ_FAILED) from exc
        return reads

    def _position(self, day: date, page_state: str) -> uuid.UUID:
        payload = decode_signed_token(page_state, self._token_key)
        if payload.get("d") != day.isoformat():
            raise InvalidPageState("page_state belongs to another query")
        try:
            return uuid.UUID(hex=str(payload["before"]))
        except (KeyError, ValueError):
            raise InvalidPageState("page_state is not a token issued by this service") from None

    @staticmethod
    def _legacy_counts(reads: _Reads, day: date, deadline: float) -> dict[str, int]:
        """The old table's rows of the day, counted by reading them (days before migration 2)."""
        statement = reads.history.old_labels.bind((day,))
        return count_labels(
            reads.session,
            statement,
            deadline,
            "the day's partition in the table written before migration 2 is too large",
        )

    def _roll_loop(self) -> None:
        """Roll up the count of each bucket this process wrote, once it has settled."""
        while not self._stop.wait(ROLLUP_EVERY):
            reads = self._reads
            if reads is not None and time.monotonic() - reads.checked > LEGACY_CHECK_EVERY:
                reads.check_legacy()
            try:
                self.roll_up()
            except Exception as exc:  # noqa: BLE001 - the cluster may be down; the next pass retries
                log.debug("prediction log: rollup pass failed (%s)", exc)

    def roll_up(self) -> int:
        """One pass: store the counts of settled buckets this process marked; returns how many."""
        marked = self._writer.sink.marked_buckets()
        todo = [(key, at) for key, at in marked.items() if self._rolled.get(key) != at]
        if not todo:
            return 0
        reads = self._read_statements()
        done = 0
        for key, at in todo:
            try:
                rolled = reads.rollups.roll(*key)
            except _READ_ERRORS as exc:  # e.g. a rollup's write timed out: this key waits, not the others
                log.debug("prediction log: rollup of %s failed (%s)", key, exc)
                continue
            if rolled:
                self._rolled[key] = at
                done += 1
        for key in [key for key in self._rolled if key not in marked]:
            del self._rolled[key]
        return done
