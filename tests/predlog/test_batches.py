"""PredictionBatch, the web layer's one-item-per-request hand-off: each backend's fast path must
store exactly what the same predictions as PredictionRecords would store."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from fashion_classifier import timeuuid
from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.base import PredictionBatch
from fashion_classifier.predlog.codec import (
    MAX_FILENAME_CHARS,
    IsoTimes,
    batch_records,
    created_datetime,
    day_of_id,
    item_from_json,
    item_rows,
    item_to_json,
)
from fashion_classifier.predlog.sqlite_log import SqliteLog, _BatchRows, _row
from fashion_classifier.predlog.writer import AsyncWriter

from .conftest import new_id

NAMES = ("T-shirt/top", "Trouser", 'Pull"over', "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class Info:
    filename: str | None
    width: int | None
    height: int | None


def make_batch(n: int = 3, infos: bool = True, created_us: int | None = None, ids=None, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.random((n, 10), dtype=np.float32)
    probs = (logits / logits.sum(axis=1, keepdims=True)).astype(np.float32)
    top3 = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    names = ['odd "name" ../日本.png', "x" * (MAX_FILENAME_CHARS + 10), None]
    return PredictionBatch(
        ids=ids or [new_id() for _ in range(n)],
        created_us=created_us if created_us is not None else time.time_ns() // 1000,
        model_version="20260101T000000Z-mlp",
        names=NAMES,
        classes=top3[:, 0].copy(),
        top3=top3,
        probs=probs,
        source="api",
        infos=[Info(names[i % 3], 28 + i, None if i % 2 else 28) for i in range(n)] if infos else None,
        latency_ms=0.75,
        client_hash="0123456789abcdef",
    )


def test_batch_records_hold_every_prediction():
    batch = make_batch(4)
    recs = batch_records(batch)
    assert [r.id for r in recs] == batch.ids
    probs = batch.probs.tolist()
    for i, rec in enumerate(recs):
        cls = int(batch.classes[i])
        assert (rec.predicted_class, rec.label, rec.confidence) == (cls, NAMES[cls], probs[i][cls])
        assert rec.top3 == tuple((NAMES[k], probs[i][k]) for k in batch.top3[i].tolist())
        assert rec.created_at == created_datetime(batch.created_us)
        assert rec.filename is None or len(rec.filename) <= MAX_FILENAME_CHARS
    assert item_rows(batch) == 4 and item_rows(recs[0]) == 1


@pytest.mark.parametrize("micros", [0, 1, 999_999, 123_456])
def test_iso_times_match_isoformat(micros):
    times = IsoTimes()
    for second in (1_764_684_000, 1_764_684_001, 0):
        us = second * 1_000_000 + micros
        assert times.iso(us) == created_datetime(us).isoformat()


def test_uuid_ticks_is_the_uuid_time():
    for _ in range(100):
        value = uuid.uuid1()
        assert timeuuid.ticks(value) == value.time


def test_sqlite_rows_of_a_batch_equal_the_rows_of_its_records():
    batch = make_batch(7)
    rows: list[tuple] = []
    _BatchRows().extend(rows, batch)
    expected = [_row(rec) for rec in batch_records(batch)]
    assert len(rows) == 7
    for got, want in zip(rows, expected, strict=True):
        assert got[:8] == want[:8] and got[9:] == want[9:]
        assert json.loads(got[8]) == json.loads(want[8])  # same JSON, spacing aside


def test_sqlite_rows_with_nan_probabilities_stay_valid_json():
    batch = make_batch(1)
    batch.probs[0, :] = np.nan
    rows: list[tuple] = []
    _BatchRows().extend(rows, batch)
    assert len(json.loads(rows[0][8])) == 3


def test_sqlite_log_stores_batches_like_records(tmp_path):
    log = SqliteLog(tmp_path / "log.sqlite3", tmp_path / "spool")
    try:
        batch = make_batch(5)
        log.record_batch(batch)
        log.record_batch(batch)  # idempotent: the same ids again are no new rows
        assert log.flush(10)
        for rec in batch_records(batch):
            assert log.get(rec.id) == rec
        assert sum(log.counts(datetime.now(UTC).date()).values()) == 5
    finally:
        log.close()


class _DownSink:
    def writable(self) -> bool:
        return False

    def write(self, items, done) -> None:
        done(items)

    def close(self) -> None:
        pass


def test_batches_count_as_rows_in_the_bounded_queue_and_spool_as_one_line_each(tmp_path):
    writer = AsyncWriter(_DownSink, tmp_path / "spool", queue_size=10, replay_interval=60)
    try:
        writer.submit(make_batch(8), 8)
        writer.submit(make_batch(8, seed=1), 8)  # would exceed 10 rows: spooled at once
        assert writer.queued_rows == 8
        assert writer.flush(10)
        assert metrics.SPOOL_ROWS._value.get() == 16
    finally:
        writer.close()
    lines = [json.loads(line) for p in (tmp_path / "spool").glob("*.ndjson") for line in p.open()]
    assert [(line["kind"], line["rows"]) for line in lines] == [("batch", 8), ("batch", 8)]


def _sqlite_rows(batch: PredictionBatch) -> list[tuple]:
    rows: list[tuple] = []
    _BatchRows().extend(rows, batch)
    return rows


@pytest.mark.parametrize("infos", [True, False])
def test_a_spooled_batch_reads_back_as_the_same_rows(infos):
    batch = make_batch(6, infos=infos)
    line = item_to_json(batch)
    assert "\n" not in line and "\u2028" not in line and line.isascii()
    back = item_from_json(line)
    assert type(back) is PredictionBatch and item_rows(back) == 6
    assert _sqlite_rows(back) == _sqlite_rows(batch)  # every stored column, probabilities to the bit
    assert batch_records(back) == batch_records(batch)
    assert np.asarray(back.probs).dtype == np.float32


def test_a_spooled_batch_keeps_float64_list_probabilities_exactly():
    batch = make_batch(3)._replace(probs=[[0.1, 0.2, 0.7] + [0.0] * 7] * 3, classes=[2, 2, 2],
                                   top3=[(2, 1, 0)] * 3)
    assert batch_records(item_from_json(item_to_json(batch))) == batch_records(batch)


def test_a_spooled_batch_line_is_bounded_like_its_records():
    batch = make_batch(2)
    long = batch._replace(infos=[type(batch.infos[0])("n" * 100_000, 28, 28)] * 2)
    line = item_to_json(long)
    assert len(line) < 2 * MAX_FILENAME_CHARS + 2_000
    assert batch_records(item_from_json(line)) == batch_records(long)  # both cut to the same name


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(classes=d["classes"][:-1]),
        lambda d: d.update(ids=["not a uuid"] * len(d["ids"])),
        lambda d: d["probs"].update(data="!!not base64!!"),
        lambda d: d["probs"].update(shape=[1, 2, 3]),
        lambda d: d["probs"].update(shape=[40]),
        lambda d: d.update(classes=[10] * len(d["classes"])),
        lambda d: d.update(top3=[[0, 1, -1]] * len(d["top3"])),
        lambda d: d.update(names=d["names"][:5]),
        lambda d: d["probs"].update(dtype="|S4"),
        lambda d: d.update(infos=[[7, 28, 28]] * len(d["ids"])),
        lambda d: d.update(infos=[["a.png", 2**40, 28]] * len(d["ids"])),
        lambda d: d.update(created_us=1e400),
        lambda d: d.update(model_version=5),
        lambda d: d.update(client_hash=["x"]),
        lambda d: d.pop("model_version"),
    ],
)
def test_a_damaged_batch_line_is_refused_not_misread(change):
    data = json.loads(item_to_json(make_batch(4)))
    change(data)
    with pytest.raises((ValueError, KeyError, TypeError)):
        item_from_json(json.dumps(data).replace("Infinity", "1e400"))


def test_an_overflowing_queue_loses_nothing_in_sqlite(tmp_path):
    """Batches spooled by the request thread (queue full) are replayed into the database."""
    log = SqliteLog(tmp_path / "log.sqlite3", tmp_path / "spool", queue_size=8)
    batches = [make_batch(5, seed=i) for i in range(12)]
    spooled = metrics.SPOOLED._value.get()
    try:
        for batch in batches:
            log.record_batch(batch)  # 60 rows for room of 8: most go to the spool at once
        assert metrics.SPOOLED._value.get() - spooled >= 20
        log._writer.replay_now()
        deadline = time.monotonic() + 20
        while sum(log.counts(datetime.now(UTC).date()).values()) < 60:
            assert time.monotonic() < deadline, "spooled batches were not replayed"
            time.sleep(0.05)
        for rec in (rec for batch in batches for rec in batch_records(batch)):
            assert log.get(rec.id) == rec
    finally:
        log.close()
    assert list((tmp_path / "spool").glob("*.ndjson")) == []


# --- Cassandra: the pre-serialized values equal the driver's own binding -----------------------

_M = "org.apache.cassandra.db.marshal."
_TYPES = (
    "SimpleDateType", "TimeUUIDType", "TimestampType", "UTF8Type", "Int32Type", "UTF8Type", "DoubleType",
    f"FrozenType({_M}ListType({_M}TupleType({_M}UTF8Type,{_M}DoubleType)))",
    "UTF8Type", "UTF8Type", "Int32Type", "Int32Type", "DoubleType", "UTF8Type",
)


def _prepared_insert():
    from cassandra import ProtocolVersion
    from cassandra.cqltypes import lookup_casstype
    from cassandra.protocol import ColumnMetadata
    from cassandra.query import PreparedStatement

    from fashion_classifier.predlog.cassandra_log import _COLUMNS

    names = ["day", *(c.strip() for c in _COLUMNS.split(","))]
    columns = [
        ColumnMetadata("ks", "predictions_by_day", name, lookup_casstype(_M + kind))
        for name, kind in zip(names, _TYPES, strict=True)
    ]
    return PreparedStatement(columns, b"query-id", [0], "INSERT ...", "ks", ProtocolVersion.V5, [], b"")


@pytest.mark.parametrize("infos", [True, False])
def test_cassandra_encoded_values_equal_the_drivers_binding(infos):
    from fashion_classifier.predlog.cassandra_log import _Encoder, _prediction_values

    prepared = _prepared_insert()
    encoder = _Encoder()
    for created_us in (time.time_ns() // 1000, 1_764_684_000_999_999, 1_764_684_000_000_000):
        batch = make_batch(6, infos=infos, created_us=created_us)
        encoded = list(encoder.rows(batch))
        for (day, values), rec in zip(encoded, batch_records(batch), strict=True):
            assert day == day_of_id(rec.id)
            assert values == prepared.bind(_prediction_values(day, rec)).values
            assert prepared.bind(_prediction_values(day, rec)).routing_key == encoder.day_bytes(day)


@pytest.mark.parametrize("infos", [True, False])
def test_a_spooled_batch_encodes_to_the_same_cassandra_values(infos):
    from fashion_classifier.predlog.cassandra_log import _Encoder

    batch = make_batch(6, infos=infos)
    assert list(_Encoder().rows(item_from_json(item_to_json(batch)))) == list(_Encoder().rows(batch))


def test_cassandra_write_failures_report_a_split_batch_once():
    """A batch split over several statements (long filenames) that all fail comes back once: the
    writer spools what comes back, and counted the batch's rows as often as it was returned."""

    class _FailingFuture:
        def add_callbacks(self, ok, error, callback_args=(), errback_args=()) -> None:
            error(OperationTimedOut("timed out"), *errback_args)

    from cassandra import OperationTimedOut

    sink = _offline_sink()
    sink.session.execute_async = lambda statement: _FailingFuture()
    batch = make_batch(60)._replace(infos=[Info("日" * MAX_FILENAME_CHARS, 28, 28)] * 60)
    failed: list = []
    sink.write([batch, make_batch(2, seed=1)], failed.extend)
    assert [item_rows(item) for item in failed] == [60, 2]


def test_a_failed_write_is_spooled_even_when_the_backend_returns_an_item_twice(tmp_path):
    class TwiceSink(_DownSink):
        def writable(self) -> bool:
            return True

        def write(self, items, done) -> None:
            done([*items, *items])

    writer = AsyncWriter(TwiceSink, tmp_path / "spool", queue_size=100, replay_interval=60)
    try:
        writer.submit(make_batch(5), 5)
        assert writer.flush(10)
    finally:
        writer.close()
    assert sum(1 for p in (tmp_path / "spool").glob("*.ndjson") for _ in p.open()) == 2


def test_cassandra_encoder_puts_rows_in_the_day_of_their_id():
    from fashion_classifier.predlog.cassandra_log import _Encoder

    before_midnight = datetime(2026, 3, 4, 23, 59, 59, 999_999, tzinfo=UTC)
    gregorian = datetime(1582, 10, 15, tzinfo=UTC)
    ticks = (before_midnight - gregorian) // timedelta(microseconds=1) * 10 + 9
    low = new_id().int & ((1 << 64) - 1)

    def at(t: int) -> uuid.UUID:
        high = (t & 0xFFFFFFFF) << 32 | ((t >> 32) & 0xFFFF) << 16 | 0x1000 | (t >> 48) & 0x0FFF
        return uuid.UUID(int=high << 64 | low)

    batch = make_batch(2, ids=[at(ticks), at(ticks + 1)])
    days = [day for day, _ in _Encoder().rows(batch)]
    assert days == [date(2026, 3, 4), date(2026, 3, 5)]


class _Future:
    def add_callbacks(self, ok, error, callback_args=(), errback_args=()) -> None:
        ok(None, *callback_args)


class _Session:
    def __init__(self) -> None:
        self.statements: list = []
        # Each statement's rows and routing key as sent: the sink clears the statement after.
        self.rows: list[list] = []
        self.routing_keys: list[bytes | None] = []

    def execute_async(self, statement):
        self.statements.append(statement)
        self.rows.append(list(statement._statements_and_parameters))
        self.routing_keys.append(statement.routing_key)
        return _Future()


def _offline_sink():
    """A CassandraSink with a recording session instead of a cluster."""
    from fashion_classifier.predlog.cassandra_log import CassandraSink, _Encoder

    sink = CassandraSink.__new__(CassandraSink)
    sink.session = _Session()
    sink._keyspace = "ks"
    sink._encoder = _Encoder()
    sink.insert_prediction = _prepared_insert()
    return sink


def test_cassandra_sink_sends_one_unlogged_batch_per_day_with_every_row():
    from cassandra.query import BatchType

    from fashion_classifier.predlog.cassandra_log import _prediction_values

    sink = _offline_sink()
    batches = [make_batch(n, seed=n) for n in (1, 3, 5)]
    replayed = batch_records(make_batch(2, seed=9))  # records from the spool share the day's batch
    failed: list = []
    sink.write([*batches, *replayed], failed.extend)
    assert failed == []
    (statement,) = sink.session.statements
    assert statement.batch_type == BatchType.UNLOGGED and statement.is_idempotent
    (sent,) = sink.session.rows
    assert len(sent) == 11
    # Released once written: the driver's finished future still holds the statement (in a
    # reference cycle only the cyclic GC frees).
    assert statement._statements_and_parameters == []
    day = day_of_id(batches[0].ids[0])
    assert sink.session.routing_keys == [sink._encoder.day_bytes(day)]
    expected = [_prediction_values(day, rec) for rec in replayed] + [
        _prediction_values(day, rec) for batch in batches for rec in batch_records(batch)
    ]
    prepared = sink.insert_prediction
    assert [values for _, _, values in sent] == [prepared.bind(v).values for v in expected]


def test_cassandra_sink_splits_batches_of_long_filenames():
    from fashion_classifier.predlog.cassandra_log import _MAX_BATCH_BYTES

    sink = _offline_sink()
    long_name = "日" * MAX_FILENAME_CHARS  # 48 KiB of UTF-8 per row
    batch = make_batch(60)
    batch = batch._replace(infos=[Info(long_name, 28, 28)] * 60)
    sink.write([batch], lambda failed: None)
    sent = sink.session.rows
    assert len(sent) > 1
    assert sum(len(rows) for rows in sent) == 60
    for rows in sent:
        size = sum(len(v) for _, _, values in rows for v in values if isinstance(v, bytes))
        assert size <= _MAX_BATCH_BYTES
