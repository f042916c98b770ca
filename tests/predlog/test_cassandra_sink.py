"""The Cassandra sink's writes, without a cluster: pre-serialized rows equal the driver's own
binding, one unlogged batch per (day, bucket) partition, and the bucket marks history and counts
depend on (sent once per bucket, again for late rows, spooled with their rows when they fail)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from cassandra import OperationTimedOut
from cassandra.query import BatchStatement, BatchType

from fashion_classifier.predlog.cassandra_buckets import (
    SLOT_SECONDS,
    bucket_bytes,
    day_bytes,
    hour_of,
    hour_row,
    place,
    routing_key,
    shard_of,
)
from fashion_classifier.predlog.cassandra_encoder import COLUMNS, Encoder, record_values
from fashion_classifier.predlog.cassandra_sink import _MAX_BATCH_BYTES, CassandraSink
from fashion_classifier.predlog.items import item_rows
from fashion_classifier.predlog.limits import MAX_FILENAME_CHARS
from fashion_classifier.predlog.records import batch_records
from fashion_classifier.predlog.spool_format import item_from_json, item_to_json
from fashion_classifier.timeuuid import TimeIds

from .conftest import Info, id_at, make_batch

_M = "org.apache.cassandra.db.marshal."
_TYPES = (
    "SimpleDateType",
    "Int32Type",
    "TimeUUIDType",
    "TimestampType",
    "UTF8Type",
    "Int32Type",
    "UTF8Type",
    "DoubleType",
    f"FrozenType({_M}ListType({_M}TupleType({_M}UTF8Type,{_M}DoubleType)))",
    "UTF8Type",
    "UTF8Type",
    "Int32Type",
    "Int32Type",
    "DoubleType",
    "UTF8Type",
    "UTF8Type",
    "UTF8Type",
    "Int32Type",
    "DoubleType",  # arm, shadow_version, shadow_class, shadow_confidence
)


def _prepared(table: str, names: list[str], types: tuple[str, ...], key: list[int]):
    from cassandra import ProtocolVersion
    from cassandra.cqltypes import lookup_casstype
    from cassandra.protocol import ColumnMetadata
    from cassandra.query import PreparedStatement

    columns = [ColumnMetadata("ks", table, n, lookup_casstype(_M + t)) for n, t in zip(names, types, strict=True)]
    return PreparedStatement(columns, table.encode(), key, "...", "ks", ProtocolVersion.V5, [], b"")


def _prepared_insert():
    names = ["day", "bucket", *(c.strip() for c in COLUMNS.split(","))]
    return _prepared("predictions_by_bucket", names, _TYPES, [0, 1])


def _prepared_mark():
    types = ("SimpleDateType", "Int32Type", "TimestampType", "LongType")
    return _prepared("buckets_by_day", ["day", "bucket", "written_at", "[timestamp]"], types, [0])


@pytest.mark.parametrize(("infos", "shadow"), [(True, False), (False, False), (True, True)])
def test_encoded_values_equal_the_drivers_binding(infos, shadow):
    prepared = _prepared_insert()
    encoder = Encoder()
    for created_us in (time.time_ns() // 1000, 1_764_684_000_999_999, 1_764_684_000_000_000):
        batch = make_batch(6, infos=infos, created_us=created_us, shadow=shadow)
        for (day, bucket, values), rec in zip(encoder.rows(batch), batch_records(batch), strict=True):
            assert (day, bucket) == place(rec.id)
            bound = prepared.bind(record_values(rec))
            assert values == bound.values
            assert bound.routing_key == routing_key(values[0], values[1])


@pytest.mark.parametrize(("infos", "shadow"), [(True, False), (False, False), (True, True)])
def test_a_spooled_batch_encodes_to_the_same_values(infos, shadow):
    batch = make_batch(6, infos=infos, shadow=shadow)
    assert list(Encoder().rows(item_from_json(item_to_json(batch)))) == list(Encoder().rows(batch))


def test_rows_go_to_the_day_and_minute_of_their_id():
    low = TimeIds().take(1)[0].int & ((1 << 64) - 1)
    midnight = datetime(2026, 3, 5, tzinfo=UTC)
    ids = [
        id_at(midnight - timedelta(microseconds=1), low),
        id_at(midnight, low),
        id_at(midnight + timedelta(seconds=SLOT_SECONDS), low),
    ]
    placed = [(day, bucket) for day, bucket, _ in Encoder().rows(make_batch(3, ids=ids))]
    assert placed == [place(i) for i in ids]
    assert [day for day, _ in placed] == [date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 5)]
    (_, last), (_, first), (_, second) = placed
    assert first == last % 8 and second == first + 8  # first and second minute of the day, same shard


def _ids_of_another_process(than: uuid.UUID, n: int) -> list[uuid.UUID]:
    """Ids of a process whose shard differs from ``than``'s (7 in 8 fresh processes)."""
    while True:
        ids = TimeIds().take(n)
        if shard_of(ids[0]) != shard_of(than):
            return ids


class _Future:
    def __init__(self, error: Exception | None = None) -> None:
        self._error = error

    def add_callbacks(self, ok, error, callback_args=(), errback_args=()) -> None:
        if self._error is None:
            ok(None, *callback_args)
        else:
            error(self._error, *errback_args)


class _Session:
    """Records what the sink sends; fails the statements ``fail`` picks."""

    def __init__(self, fail=lambda statement: None) -> None:
        self.batches: list[tuple[list, bytes | None]] = []  # rows and routing key as sent
        self.marks: list[tuple] = []
        self.statements: list = []
        self._fail = fail

    def execute_async(self, statement):
        self.statements.append(statement)
        rows = list(statement._statements_and_parameters) if isinstance(statement, BatchStatement) else []
        if rows and rows[0][1] == b"buckets_by_day":  # a mark: the bucket's row and its hour's
            self.marks.append([tuple(values[:2]) for _, _, values in rows])
        elif rows:
            self.batches.append((rows, statement.routing_key))
        return _Future(self._fail(statement))


def _offline_sink(session: _Session | None = None) -> CassandraSink:
    """A CassandraSink with a recording session instead of a cluster."""
    sink = CassandraSink.__new__(CassandraSink)
    sink.session = session or _Session()
    sink._keyspace = "ks"
    sink._encoder = Encoder()
    sink._marked = {}
    sink.insert_prediction = _prepared_insert()
    sink.insert_mark = _prepared_mark()
    return sink


def test_one_unlogged_batch_per_partition_with_every_row_and_one_mark_per_new_bucket():
    sink = _offline_sink()
    batches = [make_batch(n, seed=n) for n in (1, 3, 5)]  # one process: one partition
    replayed = batch_records(make_batch(2, seed=9))  # records from the spool share it
    other = make_batch(4, ids=_ids_of_another_process(batches[0].ids[0], 4))
    failed: list = []
    sink.write([*batches, *replayed, other], failed.extend)
    assert failed == []
    keys = {place(batches[0].ids[0]), place(other.ids[0])}
    assert len(sink.session.batches) == 2
    for statement in sink.session.statements:
        assert statement.batch_type == BatchType.UNLOGGED and statement.is_idempotent
        # Released once written: the driver's finished future still holds the statement.
        assert statement._statements_and_parameters == []
    (rows, key), (other_rows, _) = sink.session.batches
    assert len(rows) == 11 and len(other_rows) == 4
    prepared = sink.insert_prediction
    expected = [record_values(rec) for rec in replayed] + [
        record_values(rec) for batch in batches for rec in batch_records(batch)
    ]
    assert [values for _, _, values in rows] == [prepared.bind(v).values for v in expected]
    assert key == prepared.bind(expected[0]).routing_key
    assert sorted(sink.session.marks) == sorted(
        [(day_bytes(d), bucket_bytes(b)), (day_bytes(d), bucket_bytes(hour_row(hour_of(b))))] for d, b in keys
    )


def test_a_bucket_is_marked_once_while_its_minute_is_open_and_again_for_each_late_write():
    sink = _offline_sink()
    low = TimeIds().take(1)[0].int & ((1 << 64) - 1)
    now = datetime.now(UTC)
    ahead, old = id_at(now + timedelta(hours=1), low), id_at(now - timedelta(minutes=5), low)
    marks = []
    for pid in (ahead, ahead, old, old):
        sink.session = _Session()
        sink.write([make_batch(1, ids=[pid])], lambda failed: None)
        marks.append(len(sink.session.marks))
    assert marks == [1, 0, 1, 1]
    assert list(sink.marked_buckets()) == [place(ahead), place(old)]


def test_a_failed_mark_spools_its_rows_and_is_sent_again():
    def marks_fail(statement):
        is_mark = statement._statements_and_parameters[0][1] == b"buckets_by_day"
        return OperationTimedOut("timed out") if is_mark else None

    session = _Session(fail=marks_fail)
    sink = _offline_sink(session)
    batch = make_batch(3)
    failed: list = []
    sink.write([batch], failed.extend)
    assert failed == [batch]
    assert sink.marked_buckets() == {}
    sink.session = _Session()
    sink.write([batch], failed.extend)
    assert len(sink.session.marks) == 1 and list(sink.marked_buckets()) == [place(batch.ids[0])]


def test_write_failures_report_a_split_batch_once():
    """A batch split over several statements (long filenames) that all fail comes back once: the
    writer spools what comes back, and counted the batch's rows as often as it was returned."""
    sink = _offline_sink(_Session(fail=lambda s: OperationTimedOut("timed out")))
    batch = make_batch(60)._replace(infos=[Info("日" * MAX_FILENAME_CHARS, 28, 28)] * 60)
    failed: list = []
    sink.write([batch, make_batch(2, seed=1)], failed.extend)
    assert [item_rows(item) for item in failed] == [60, 2]


def test_batches_of_long_filenames_are_split():
    sink = _offline_sink()
    batch = make_batch(60)._replace(infos=[Info("日" * MAX_FILENAME_CHARS, 28, 28)] * 60)  # 48 KiB a row
    sink.write([batch], lambda failed: None)
    sent = [rows for rows, _ in sink.session.batches]
    assert len(sent) > 1
    assert sum(len(rows) for rows in sent) == 60
    for rows in sent:
        size = sum(len(v) for _, _, values in rows for v in values if isinstance(v, bytes))
        assert size <= _MAX_BATCH_BYTES


def test_a_batch_of_encoded_rows_equals_the_batch_the_drivers_add_builds():
    """cassandra-driver is pinned to one release series (tests/test_dependencies.py): this fails
    first when an upgrade reshapes ``BatchStatement._statements_and_parameters``, which the sink
    extends with rows it serialized itself."""
    batch = make_batch(5, seed=3)
    sent: list[tuple] = []

    class Recording(_Session):
        def execute_async(self, statement):
            if statement._statements_and_parameters[0][1] != b"buckets_by_day":
                sent.append((list(statement._statements_and_parameters), statement.routing_key, statement.keyspace))
            return super().execute_async(statement)

    sink = _offline_sink(Recording())
    failed: list = []
    sink.write([batch], failed.extend)
    assert failed == []
    drivers = BatchStatement(batch_type=BatchType.UNLOGGED)
    for rec in batch_records(batch):
        drivers.add(sink.insert_prediction.bind(record_values(rec)))
    assert sent == [(drivers._statements_and_parameters, drivers.routing_key, drivers.keyspace)]
