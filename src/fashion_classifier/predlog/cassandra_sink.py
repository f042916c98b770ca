"""Writes of the Cassandra prediction log: the sink the AsyncWriter drives.

:class:`CassandraSink` turns each batch from the writer into unlogged batches of prepared
inserts, one per (day, bucket) partition (a single-partition batch is one mutation: cheap for the
cluster and atomic), sent together (``cassandra_fan_in``); the writer bounds how many are in
flight and spools what fails. Each partition's first write from this process, and every write
after its minute has ended (spool replays, retries), also marks the bucket and its hour in
``buckets_by_day``: that is how history finds the partition and how a count rollup learns it is
stale. A mark that fails spools its rows, so their replay marks the bucket again.

The sink connects in a background thread and retries with backoff, so the service starts and
serves before Cassandra is reachable.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime

from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

from fashion_classifier.config import Settings
from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.base import PredictionBatch
from fashion_classifier.predlog.cassandra_buckets import hour_of, hour_row, place, routing_key, slot_end
from fashion_classifier.predlog.cassandra_encoder import COLUMN_NAMES, COLUMNS, FILENAME, Encoder, record_values
from fashion_classifier.predlog.cassandra_fan_in import FanIn, Send
from fashion_classifier.predlog.cassandra_schema import REQUIRED_TABLES, check_keyspace_name
from fashion_classifier.predlog.cassandra_session import build_cluster, quiet_connect_errors
from fashion_classifier.predlog.items import Feedback, Item
from fashion_classifier.predlog.writer import Done

log = logging.getLogger(__name__)

# Seconds without any reachable node after which the contact points are resolved again (see
# CassandraSink._watch_hosts).
REDISCOVER_AFTER = 15.0
MARKED_KEEP = 4096  # buckets remembered as marked by this process (a few per minute are live)


class CassandraSink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._keyspace = check_keyspace_name(settings.cassandra_keyspace)
        self.session = None
        self._cluster = None
        self._encoder = Encoder()
        # Buckets this process has marked, oldest first, with the time of their last mark.
        self._marked: dict[tuple[date, int], datetime] = {}
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
        if not missing:  # a release newer than the schema: its migration has not run yet
            columns = tables["predictions_by_bucket"].columns
            missing = [f"predictions_by_bucket.{name}" for name in COLUMN_NAMES if name not in columns]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} missing in {ks}: run `fashion-classifier migrate`")
        values = ", ".join("?" * (2 + len(COLUMN_NAMES)))
        self.insert_prediction = session.prepare(
            f"INSERT INTO {ks}.predictions_by_bucket (day, bucket, {COLUMNS}) VALUES ({values})"
        )
        self.insert_mark = session.prepare(
            f"INSERT INTO {ks}.buckets_by_day (day, bucket, written_at) VALUES (?, ?, ?) USING TIMESTAMP ?"
        )
        # A label lands in its prediction's row, before or after the row itself (cells merge).
        self.insert_feedback = session.prepare(
            f"UPDATE {ks}.predictions_by_bucket SET true_label = ?, feedback_at = ? "
            "WHERE day = ? AND bucket = ? AND id = ?"
        )
        for statement in (self.insert_prediction, self.insert_mark, self.insert_feedback):
            statement.is_idempotent = True
        self.prepared_session = session

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
        log.warning(
            "prediction log: no Cassandra node reachable for %.0f s; resolving %s again",
            now - self._down_since,
            ",".join(self._settings.cassandra_hosts),
        )
        self._down_since = None
        self._thread = threading.Thread(target=self._connect_loop, name="predlog-connect", daemon=True)
        self._thread.start()

    # --- writing ----------------------------------------------------------------------------
    def write(self, items: list[Item], done: Done) -> None:
        if self.session is None:
            done(items)
            return
        groups: list[Send] = []
        buckets = _BucketGroups()
        for item in items:
            kind = type(item)
            if kind is PredictionBatch:
                for day, bucket, values in self._encoder.rows(item):
                    filename = values[FILENAME]
                    size = _ROW_BYTES + (0 if filename is UNSET_VALUE else len(filename))
                    group = buckets.take(day, bucket, size)
                    group.encoded.append(values)
                    if not group.items or group.items[-1] is not item:
                        group.items.append(item)  # a batch split over two groups is in both
            elif kind is Feedback:
                statement = self.insert_feedback.bind(
                    (item.true_label, item.created_at, *place(item.prediction_id), item.prediction_id)
                )
                groups.append(Send(statement, [item]))
            else:
                day, bucket = place(item.id)
                group = buckets.take(day, bucket, _ROW_BYTES + 4 * len(item.filename or ""))
                group.items.append(item)
                group.records.append(item)
        query_id = self.insert_prediction.query_id
        now = datetime.now(UTC)
        marks: dict[tuple[date, int], list[Item]] = {}
        for group in buckets.all():
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for rec in group.records:
                batch.add(self.insert_prediction, record_values(rec))
            if group.encoded:
                # Rows already serialized by the Encoder: what batch.add(prepared, values) would
                # append after binding, without the driver's per-value Python.
                first = group.encoded[0]
                batch.routing_key = routing_key(first[0], first[1])
                batch.keyspace = self._keyspace
                batch._statements_and_parameters.extend((True, query_id, values) for values in group.encoded)
            batch.is_idempotent = True
            groups.append(Send(batch, group.items))
            key = (group.day, group.bucket)
            if key not in self._marked or now >= slot_end(*key):
                marks.setdefault(key, []).extend(group.items)
        for (day, bucket), marked_items in marks.items():
            # The bucket's row and its hour's, one partition (the day): one mutation.
            stamp = time.time_ns() // 1000
            written = datetime.fromtimestamp(stamp / 1e6, UTC)
            mark = BatchStatement(batch_type=BatchType.UNLOGGED)
            mark.add(self.insert_mark, (day, bucket, written, stamp))
            mark.add(self.insert_mark, (day, hour_row(hour_of(bucket)), written, stamp))
            mark.is_idempotent = True
            groups.append(Send(mark, marked_items, lambda key=(day, bucket), at=now: self._remember(key, at)))
        FanIn(self.session, groups, done).start()

    def _remember(self, key: tuple[date, int], at: datetime) -> None:
        """A bucket whose mark reached the cluster: its next on-time writes need none."""
        marked = self._marked
        marked.pop(key, None)
        marked[key] = at
        if len(marked) > MARKED_KEEP:
            del marked[next(iter(marked))]

    def marked_buckets(self) -> dict[tuple[date, int], datetime]:
        """The buckets this process wrote to lately and when it last marked each (the buckets its
        rollups look after)."""
        return dict(self._marked)

    def close(self) -> None:
        self._stop.set()
        if self._cluster is not None:
            self._cluster.shutdown()
        metrics.CONNECTED.set(0)


def _login_refused(exc: Exception) -> bool:
    """The driver's NoHostAvailable when a node it tried refused the credentials. Its ``errors``
    is each host's error, or just the hosts (a list) when the keyspace could not be set."""
    from cassandra import AuthenticationFailed

    errors = getattr(exc, "errors", None) or {}
    return isinstance(errors, dict) and any(isinstance(err, AuthenticationFailed) for err in errors.values())


# One unlogged batch per partition is one mutation for the cluster. Rows are ~300 bytes, but
# client filenames may be up to 64 KB (16,384 characters of UTF-8): a partition's rows are split
# into batches of at most ~1 MiB so no mutation nears the cluster's limit (half a commit log
# segment, 16 MiB by default), however many long filenames arrive together.
_MAX_BATCH_BYTES = 1 << 20
_ROW_BYTES = 300


class _Group:
    __slots__ = ("bucket", "day", "encoded", "items", "records", "size")

    def __init__(self, day: date, bucket: int) -> None:
        self.day = day
        self.bucket = bucket
        self.encoded: list[list] = []  # serialized rows (from PredictionBatches)
        self.items: list[Item] = []  # the queued items these rows came from
        self.records: list = []  # PredictionRecords (replay), bound by the driver
        self.size = 0


class _BucketGroups:
    def __init__(self) -> None:
        self._open: dict[tuple[date, int], _Group] = {}
        self._full: list[_Group] = []

    def take(self, day: date, bucket: int, size: int) -> _Group:
        """The group of the partition with room for a row of ``size`` bytes (a new one when full)."""
        key = (day, bucket)
        group = self._open.get(key)
        if group is None or (group.size and group.size + size > _MAX_BATCH_BYTES):
            if group is not None:
                self._full.append(group)
            group = self._open[key] = _Group(day, bucket)
        group.size += size
        return group

    def all(self) -> list[_Group]:
        return [*self._full, *self._open.values()]
