"""The prediction log in Apache Cassandra.

Writes: :class:`CassandraSink` turns each batch from the :class:`AsyncWriter` into unlogged
batches of prepared inserts, one per day partition (a single-partition batch is one mutation:
cheap for the cluster and atomic), sent with ``execute_async``; the writer bounds how many are in
flight and spools what fails. The sink connects in a background thread and retries with
backoff, so the service starts and serves before Cassandra is reachable.

Reads run on the request thread against the same per-process session; they raise
:class:`PredictionLogUnavailable` until it is connected or when the cluster cannot answer.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import struct
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from cassandra import DriverException, InvalidRequest, RequestExecutionException, RequestValidationException
from cassandra.cluster import NoHostAvailable
from cassandra.protocol import ProtocolException
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, Statement

from fashion_classifier import timeuuid
from fashion_classifier.config import Settings
from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.base import (
    InvalidPageState,
    Page,
    PredictionBatch,
    PredictionLogUnavailable,
    PredictionRecord,
)
from fashion_classifier.predlog.cassandra_schema import REQUIRED_TABLES, check_keyspace_name
from fashion_classifier.predlog.cassandra_session import build_cluster, quiet_connect_errors
from fashion_classifier.predlog.codec import (
    DayBuckets,
    Feedback,
    Item,
    batch_columns,
    batch_records,
    day_of,
    day_of_id,
    decode_token,
    encode_token,
    item_rows,
    limit_filename,
    limit_record,
    utc,
)
from fashion_classifier.predlog.writer import AsyncWriter, Done

log = logging.getLogger(__name__)

RECENT_DAYS = 7  # how far back recent() looks
# Seconds without any reachable node after which the contact points are resolved again (see
# CassandraSink._watch_hosts).
REDISCOVER_AFTER = 15.0
COUNT_PAGE_ROWS = 5000  # rows per page when counts() reads a day
_COLUMNS = (
    "id, created_at, model_version, predicted_class, label, confidence, top3, source, "
    "filename, image_width, image_height, latency_ms, client_hash"
)
_READ_ERRORS = (DriverException, RequestExecutionException, NoHostAvailable, OSError)


class CassandraSink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._keyspace = check_keyspace_name(settings.cassandra_keyspace)
        self.session = None
        self._cluster = None
        self._encoder = _Encoder()
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._connect_loop, name="predlog-connect", daemon=True)
        self._thread.start()

    # --- connection -------------------------------------------------------------------------
    def _connect_loop(self) -> None:
        delay, last_error = 0.5, None
        while not self._stop.is_set():
            cluster = None
            try:
                # Raises when no contact point resolves: the Cassandra pods' names exist only
                # once the pods do, and the classifier may start first.
                cluster = build_cluster(self._settings)
                with quiet_connect_errors():  # the cause is logged below, once
                    session = cluster.connect(self._keyspace)
                self._prepare(session)
            except Exception as exc:  # any failure: the cluster is not usable yet
                if cluster is not None:
                    cluster.shutdown()
                if _login_refused(exc):
                    # One line, however often it is retried and whichever node answers first.
                    if last_error != "login refused":
                        log.error(
                            "prediction log: Cassandra refused the login of role %r (check "
                            "FC_CASSANDRA_USERNAME / FC_CASSANDRA_PASSWORD); predictions go to the spool "
                            "and are written once a login succeeds",
                            self._settings.cassandra_username,
                        )
                        last_error = "login refused"
                elif str(exc) != last_error:
                    log.warning("prediction log: Cassandra not reachable yet (%s); retrying", exc)
                    last_error = str(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            if self._stop.is_set():  # closed while connecting
                cluster.shutdown()
                return
            previous, self._cluster, self.session = self._cluster, cluster, session
            metrics.CONNECTED.set(1)
            log.info("prediction log: connected to Cassandra %s", ",".join(self._settings.cassandra_hosts))
            if previous is not None:
                previous.shutdown()  # writes still on it fail and are spooled, then replayed
            return

    def _prepare(self, session) -> None:
        ks = self._keyspace
        tables = session.cluster.metadata.keyspaces[ks].tables
        missing = [name for name in REQUIRED_TABLES if name not in tables]
        if missing:
            names = ", ".join(missing)
            raise RuntimeError(f"tables {names} missing in {ks}: run `fashion-classifier migrate`")
        self.insert_prediction = session.prepare(
            f"INSERT INTO {ks}.predictions_by_day (day, {_COLUMNS}) VALUES ({', '.join('?' * 14)})"
        )
        self.insert_feedback = session.prepare(
            f"INSERT INTO {ks}.feedback_by_id (id, true_label, created_at) VALUES (?, ?, ?)"
        )
        self.select_one = session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.predictions_by_day WHERE day = ? AND id = ?"
        )
        self.select_day = session.prepare(f"SELECT {_COLUMNS} FROM {ks}.predictions_by_day WHERE day = ?")
        self.select_labels = session.prepare(f"SELECT label FROM {ks}.predictions_by_day WHERE day = ?")
        self.select_feedback = session.prepare(
            f"SELECT id, true_label FROM {ks}.feedback_by_id WHERE id IN ?"
        )
        for statement in (self.insert_prediction, self.insert_feedback):
            statement.is_idempotent = True

    def writable(self) -> bool:
        up = self.session is not None and any(host.is_up for host in self._cluster.metadata.all_hosts())
        metrics.CONNECTED.set(1 if up else 0)
        if self.session is not None:
            self._watch_hosts(up)
        return up

    def _watch_hosts(self, up: bool) -> None:
        """Reconnect from the contact points when no node has been reachable for a while.

        The driver only reconnects to the addresses it has seen. When every node comes back at a
        new address (Kubernetes pods rescheduled or a StatefulSet scaled to 0 and back), those
        retries never succeed. A new Cluster resolves the contact points (the pods' DNS names) again.
        """
        now = time.monotonic()
        if up or self._down_since is None:
            self._down_since = None if up else now
            return
        if now - self._down_since < REDISCOVER_AFTER or self._thread.is_alive() or self._stop.is_set():
            return
        log.warning("prediction log: no Cassandra node reachable for %.0f s; resolving %s again",
                    now - self._down_since, ",".join(self._settings.cassandra_hosts))
        self._down_since = None
        self._thread = threading.Thread(target=self._connect_loop, name="predlog-connect", daemon=True)
        self._thread.start()

    # --- writing ----------------------------------------------------------------------------
    def write(self, items: list[Item], done: Done) -> None:
        if self.session is None:
            done(items)
            return
        groups: list[tuple[Statement, list[Item]]] = []
        days = _DayGroups()
        for item in items:
            kind = type(item)
            if kind is PredictionBatch:
                for day, values in self._encoder.rows(item):
                    filename = values[_FILENAME]
                    group = days.take(day, _ROW_BYTES + (0 if filename is UNSET_VALUE else len(filename)))
                    group.encoded.append(values)
                    if not group.items or group.items[-1] is not item:
                        group.items.append(item)  # a batch split over two groups is in both
            elif kind is Feedback:
                statement = self.insert_feedback.bind((item.prediction_id, item.true_label, item.created_at))
                groups.append((statement, [item]))
            else:
                group = days.take(day_of(item), _ROW_BYTES + 4 * len(item.filename or ""))
                group.items.append(item)
                group.records.append(item)
        query_id = self.insert_prediction.query_id
        for group in days.all():
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for rec in group.records:
                batch.add(self.insert_prediction, _prediction_values(group.day, rec))
            if group.encoded:
                # Rows already serialized by _Encoder: what batch.add(prepared, values) would
                # append after binding, without the driver's per-value Python (~10x the cost).
                # The partition key is the day, so the day's bytes are the routing key.
                batch.routing_key = self._encoder.day_bytes(group.day)
                batch.keyspace = self._keyspace
                batch._statements_and_parameters.extend((True, query_id, values) for values in group.encoded)
            batch.is_idempotent = True
            groups.append((batch, group.items))
        _FanIn(self.session, groups, done).start()

    def close(self) -> None:
        self._stop.set()
        if self._cluster is not None:
            self._cluster.shutdown()
        metrics.CONNECTED.set(0)


# What a client is told when a read fails; the driver's error (hosts, internals) is the cause.
_READ_FAILED = "reading from Cassandra failed; retry shortly"


def _login_refused(exc: Exception) -> bool:
    """The driver's NoHostAvailable when a node it tried refused the credentials."""
    from cassandra import AuthenticationFailed

    errors = list((getattr(exc, "errors", None) or {}).values())
    return any(isinstance(err, AuthenticationFailed) for err in errors)


# One unlogged batch per day partition is one mutation for the cluster. Rows are ~300 bytes, but
# client filenames may be up to 64 KB (16,384 characters of UTF-8): a day's rows are split into
# batches of at most ~1 MiB so no mutation nears the cluster's limit (half a commit log segment,
# 16 MiB by default), however many long filenames arrive together.
_MAX_BATCH_BYTES = 1 << 20
_ROW_BYTES = 300
_FILENAME = 9  # index of the filename among insert_prediction's values


class _DayGroup:
    __slots__ = ("day", "encoded", "items", "records", "size")

    def __init__(self, day: date) -> None:
        self.day = day
        self.encoded: list[list] = []  # serialized rows (from PredictionBatches)
        self.items: list[Item] = []  # the queued items these rows came from
        self.records: list[PredictionRecord] = []  # records (replay), bound by the driver
        self.size = 0


class _DayGroups:
    def __init__(self) -> None:
        self._open: dict[date, _DayGroup] = {}
        self._full: list[_DayGroup] = []

    def take(self, day: date, size: int) -> _DayGroup:
        """The group of ``day`` with room for a row of ``size`` bytes (a new one when full)."""
        group = self._open.get(day)
        if group is None or (group.size and group.size + size > _MAX_BATCH_BYTES):
            if group is not None:
                self._full.append(group)
            group = self._open[day] = _DayGroup(day)
        group.size += size
        return group

    def all(self) -> list[_DayGroup]:
        return [*self._full, *self._open.values()]


class _FanIn:
    """Runs several batches concurrently and reports the items of those that failed, once.

    The driver keeps each finished ``ResponseFuture`` (with its message and callbacks) in a
    reference cycle with its timer, which only Python's cyclic GC frees. Rows those futures reached
    were promoted to the oldest generation and made full collections frequent and long (at 2,700
    logged predictions/s, a 20-130 ms pause of each worker every ~2.5 s: the p99 of a logging
    server). So each batch's rows are released when its future settles, and the rest once the
    last one has.
    """

    def __init__(self, session, groups: list[tuple[Statement, list[Item]]], done: Done) -> None:
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
        for index, (statement, _items) in enumerate(self._groups):
            try:
                future = self._session.execute_async(statement)
            except Exception as exc:  # e.g. NoHostAvailable raised synchronously
                self._finish(index, exc)
                continue
            future.add_callbacks(self._ok, self._error, callback_args=(index,), errback_args=(index,))

    def _ok(self, _rows, index: int) -> None:
        self._finish(index, None)

    def _error(self, exc: Exception, index: int) -> None:
        self._finish(index, exc)

    def _finish(self, index: int, exc: Exception | None) -> None:
        statement, items = self._groups[index]
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


_int32 = struct.Struct(">i").pack
_int64 = struct.Struct(">q").pack
_double = struct.Struct(">d").pack
_uint32 = struct.Struct(">I").pack
_DATE_OFFSET_DAYS = 2**31  # CQL date: unsigned days since 1970-01-01, centred at 2^31
_THREE = _int32(3)
_DOUBLE_LENGTH = _int32(8)


class _Encoder:
    """The bound values of ``insert_prediction`` for a PredictionBatch, serialized in the writer
    thread as the driver would (native protocol v5, same bytes: tests compare them with the
    driver's own serializers).

    Binding through the driver costs ~14 Python-level serializer calls per row; most values of a
    batch repeat (day, created_at, model version, labels, source, client hash, image size), so
    they are encoded once and reused, and a row costs a few ``struct`` packs.
    """

    def __init__(self) -> None:
        self._days = DayBuckets()
        self._day: date | None = None
        self._day_bytes = b""
        self._text: dict[str, bytes] = {}
        self._small_ints: dict[int, bytes] = {}
        self._names: object = None
        self._labels: list[bytes] = []
        self._top_items: list[bytes] = []  # per class: tuple length, label length, label, double length

    def day_bytes(self, day: date) -> bytes:
        return _uint32((day - _EPOCH_DAY).days + _DATE_OFFSET_DAYS)

    def text(self, value: str) -> bytes:
        encoded = self._text.get(value)
        if encoded is None:
            if len(self._text) > 4096:  # filenames may all differ: keep the cache small
                self._text.clear()
            encoded = self._text[value] = value.encode("utf-8")
        return encoded

    def integer(self, value: int) -> bytes:
        encoded = self._small_ints.get(value)
        if encoded is None:
            if len(self._small_ints) > 4096:
                self._small_ints.clear()
            encoded = self._small_ints[value] = _int32(value)
        return encoded

    def _set_names(self, names) -> None:
        self._names = names
        self._labels = [name.encode("utf-8") for name in names]
        self._top_items = [
            _int32(4 + len(label) + 4 + 8) + _int32(len(label)) + label + _DOUBLE_LENGTH for label in self._labels
        ]

    def _top3(self, top: list[int], row: list[float]) -> bytes:
        items = self._top_items
        if len(top) == 3:
            a, b, c = top
            return b"".join((_THREE, items[a], _double(row[a]), items[b], _double(row[b]), items[c], _double(row[c])))
        parts = [_int32(len(top))]
        for k in top:
            parts += (items[k], _double(row[k]))
        return b"".join(parts)

    def rows(self, batch: PredictionBatch):
        """(day, serialized values in insert_prediction's order) per prediction of the batch."""
        classes, top3, probs = batch_columns(batch)
        if batch.names is not self._names:  # the model's class names: the same object batch after batch
            self._set_names(batch.names)
        labels, integer = self._labels, self.integer
        created = _int64(batch.created_us // 1000)  # CQL timestamp: milliseconds
        version = self.text(batch.model_version)
        source = self.text(batch.source)
        latency = _double(batch.latency_ms)
        client = UNSET_VALUE if batch.client_hash is None else self.text(batch.client_hash)
        infos = batch.infos
        days = self._days
        for i, pid in enumerate(batch.ids):
            day = days.of_ticks(timeuuid.ticks(pid))
            if day is not self._day:
                self._day, self._day_bytes = day, self.day_bytes(day)
            cls, row = classes[i], probs[i]
            if infos is None:
                filename = width = height = UNSET_VALUE
            else:
                info = infos[i]
                name = limit_filename(info.filename)
                filename = UNSET_VALUE if name is None else self.text(name)
                width = UNSET_VALUE if info.width is None else integer(info.width)
                height = UNSET_VALUE if info.height is None else integer(info.height)
            yield day, [
                self._day_bytes, pid.bytes, created, version, integer(cls), labels[cls], _double(row[cls]),
                self._top3(top3[i], row), source, filename, width, height, latency, client,
            ]


_EPOCH_DAY = date(1970, 1, 1)


def _optional(value):
    # A bound null writes a tombstone; an unset value writes nothing.
    return UNSET_VALUE if value is None else value


def _prediction_values(day: date, rec: PredictionRecord) -> tuple:
    return (
        day,
        rec.id,
        rec.created_at,
        rec.model_version,
        rec.predicted_class,
        rec.label,
        rec.confidence,
        [(name, float(prob)) for name, prob in rec.top3],
        rec.source,
        _optional(rec.filename),
        _optional(rec.image_width),
        _optional(rec.image_height),
        rec.latency_ms,
        _optional(rec.client_hash),
    )


def _record(row, true_label: int | None = None) -> PredictionRecord:
    return PredictionRecord(
        id=row.id,
        created_at=utc(row.created_at),
        model_version=row.model_version,
        predicted_class=row.predicted_class,
        label=row.label,
        confidence=row.confidence,
        top3=tuple((name, prob) for name, prob in (row.top3 or ())),
        source=row.source,
        filename=row.filename,
        image_width=row.image_width,
        image_height=row.image_height,
        latency_ms=row.latency_ms or 0.0,
        client_hash=row.client_hash,
        true_label=true_label,
    )


class CassandraLog:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        check_keyspace_name(settings.cassandra_keyspace)
        # counts() reads a whole day partition on the request thread, at ~250k rows/s on this
        # 2-core machine: past this budget it answers 503 rather than hold the worker until
        # gunicorn kills it at FC_TIMEOUT (with every connection it was serving).
        self.count_budget = settings.timeout / 2
        # Larger, rarer batches than the writer's defaults: the cluster's cost per mutation (commit
        # log entry, the message to the other replica, the acknowledgement) is shared by more rows,
        # and the JVMs take their CPU from the same two cores as the service. At most 2 batches in
        # flight (one turn's rows fit one batch at the measured peak): with the queue, that bounds
        # what a SIGKILLed worker loses to FC_QUEUE_SIZE + 2,000 rows.
        self._writer = AsyncWriter(
            lambda: CassandraSink(settings), settings.spool_dir, settings.queue_size, batch_size=1000, linger=0.5,
            max_in_flight=2,
        )

    # --- writing ----------------------------------------------------------------------------
    def start(self) -> None:
        self._writer.start()  # the sink connects in its own thread

    def record(self, rec: PredictionRecord) -> None:
        if rec.id.version != 1:
            # The id is the row's timeuuid; the cluster would reject it (and it has no day).
            log.error("prediction log: id %s is not a time-based uuid; not recorded", rec.id)
            metrics.WRITE_ERRORS.inc()
            return
        self._writer.submit(limit_record(rec))

    def record_batch(self, batch: PredictionBatch) -> None:
        if batch.ids and (batch.ids[0].int >> 76) & 0xF != 1:  # .version costs ~1.5 µs
            for rec in batch_records(batch):  # logged and counted as errors, one by one
                self.record(rec)
            return
        self._writer.submit(batch, len(batch.ids))

    def add_feedback(self, prediction_id: uuid.UUID, true_label: int) -> None:
        if prediction_id.version != 1:
            return  # no prediction can have this id
        self._writer.submit(Feedback(prediction_id, int(true_label), datetime.now(UTC)))

    def flush(self, timeout: float = 10.0) -> bool:
        return self._writer.flush(timeout)

    def close(self) -> None:
        self._writer.close()

    @property
    def connected(self) -> bool:
        return self._writer.sink.writable()

    # --- reading ----------------------------------------------------------------------------
    def get(self, prediction_id: uuid.UUID) -> PredictionRecord | None:
        day = day_of_id(prediction_id)
        if day is None:
            return None
        sink = self._sink()
        try:
            rows = list(sink.session.execute(sink.select_one, (day, prediction_id)))
            if not rows:
                return None
            labels = self._feedback(sink, [prediction_id])
        except _READ_ERRORS as exc:
            raise PredictionLogUnavailable(_READ_FAILED) from exc
        return _record(rows[0], labels.get(prediction_id))

    def list_day(self, day: date, limit: int = 50, page_state: str | None = None) -> Page:
        paging = self._paging_state(day, page_state) if page_state else None
        sink = self._sink()
        statement = sink.select_day.bind((day,))
        statement.fetch_size = limit
        try:
            result = sink.session.execute(statement, paging_state=paging)
            rows = list(result.current_rows)
            next_state = result.paging_state
            if next_state is not None and not self._has_more(sink, day, next_state):
                next_state = None  # the server cannot tell a full last page from a middle one
            labels = self._feedback(sink, [row.id for row in rows])
        except (ProtocolException, RequestValidationException) as exc:
            if paging is not None:
                raise InvalidPageState("page_state is not a token issued by this service") from exc
            raise PredictionLogUnavailable(_READ_FAILED) from exc
        except _READ_ERRORS as exc:
            raise PredictionLogUnavailable(_READ_FAILED) from exc
        token = None
        if next_state is not None:
            raw = base64.urlsafe_b64encode(next_state).decode()
            token = encode_token({"b": "cassandra", "d": day.isoformat(), "p": raw})
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
        sink = self._sink()
        statement = sink.select_labels.bind((day,))
        statement.fetch_size = COUNT_PAGE_ROWS
        deadline = time.monotonic() + self.count_budget
        tally: collections.Counter[str] = collections.Counter()
        try:
            result = sink.session.execute(statement)
            while True:
                tally.update(row.label for row in result.current_rows)
                if not result.has_more_pages:
                    break
                if time.monotonic() > deadline:
                    raise PredictionLogUnavailable(
                        f"counting {day} stopped after {self.count_budget:g} s and "
                        f"{tally.total():,} predictions: a day is one Cassandra partition, read "
                        "whole, and this one is too large to count in a request (the "
                        "fc_predictions_total metric counts predictions as they are made)"
                    )
                result.fetch_next_page()
        except _READ_ERRORS as exc:
            raise PredictionLogUnavailable(_READ_FAILED) from exc
        return dict(sorted(tally.items()))

    # --- internals ------------------------------------------------------------------------------
    def _sink(self) -> CassandraSink:
        sink = self._writer.sink
        if sink.session is None:
            raise PredictionLogUnavailable("not connected to Cassandra yet")
        return sink

    @staticmethod
    def _paging_state(day: date, page_state: str) -> bytes:
        payload = decode_token(page_state)
        if payload.get("b") != "cassandra" or payload.get("d") != day.isoformat():
            raise InvalidPageState("page_state belongs to another query")
        try:
            return base64.urlsafe_b64decode(str(payload["p"]).encode("ascii"))
        except (KeyError, ValueError, UnicodeError, binascii.Error):
            raise InvalidPageState("page_state is not a token issued by this service") from None

    @staticmethod
    def _has_more(sink: CassandraSink, day: date, paging: bytes) -> bool:
        probe = sink.select_day.bind((day,))
        probe.fetch_size = 1
        return bool(sink.session.execute(probe, paging_state=paging).current_rows)

    @staticmethod
    def _feedback(sink: CassandraSink, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        labels: dict[uuid.UUID, int] = {}
        for start in range(0, len(ids), 100):
            for row in sink.session.execute(sink.select_feedback, (ids[start : start + 100],)):
                labels[row.id] = row.true_label
        return labels
