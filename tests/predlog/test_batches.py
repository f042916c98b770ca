"""PredictionBatch, the web layer's one-item-per-request hand-off: each backend's fast path must
store exactly what the same predictions as PredictionRecords would store."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

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
    item_from_json,
    item_rows,
    item_to_json,
)
from fashion_classifier.predlog.sqlite_log import SqliteLog, _BatchRows, _row
from fashion_classifier.predlog.writer import AsyncWriter

from .conftest import NAMES, make_batch


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


@pytest.mark.parametrize("shadow", [False, True])
def test_sqlite_rows_of_a_batch_equal_the_rows_of_its_records(shadow):
    batch = make_batch(7, shadow=shadow)
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


@pytest.mark.parametrize("shadow", [False, True])
def test_sqlite_log_stores_batches_like_records(tmp_path, shadow):
    log = SqliteLog(tmp_path / "log.sqlite3", tmp_path / "spool")
    try:
        batch = make_batch(5, shadow=shadow)
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


@pytest.mark.parametrize(("infos", "shadow"), [(True, False), (False, False), (True, True)])
def test_a_spooled_batch_reads_back_as_the_same_rows(infos, shadow):
    batch = make_batch(6, infos=infos, shadow=shadow)
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
        lambda d: d["shadow_probs"].update(shape=[2, 20]),
        lambda d: d["shadow_probs"].update(dtype="<i4"),
        lambda d: d.update(arm=1),
        lambda d: d.update(shadow_version=["v"]),
    ],
)
def test_a_damaged_batch_line_is_refused_not_misread(change):
    data = json.loads(item_to_json(make_batch(4, shadow=True)))
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



def test_a_batch_spooled_before_rollouts_reads_back_without_arm_or_shadow():
    batch = make_batch(3)
    data = json.loads(item_to_json(batch))
    for key in ("arm", "shadow_version", "shadow_probs"):
        data.pop(key)
    back = item_from_json(json.dumps(data))
    assert batch_records(back) == batch_records(batch)
    assert {(r.arm, r.shadow_version, r.shadow_class) for r in batch_records(back)} == {(None, None, None)}


def test_a_shadow_batch_records_the_candidates_class_and_confidence():
    batch = make_batch(4, shadow=True)
    for i, rec in enumerate(batch_records(batch)):
        assert rec.arm == "current" and rec.shadow_version == batch.shadow_version
        assert rec.shadow_class == int(np.argmax(batch.shadow_probs[i]))
        assert rec.shadow_confidence == pytest.approx(float(np.max(batch.shadow_probs[i])))
        assert rec.shadow_class == (rec.predicted_class + 1) % 10  # make_batch's shadow is shifted by one
