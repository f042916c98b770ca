from __future__ import annotations

import multiprocessing
import sqlite3
import time
import uuid
from datetime import UTC, datetime

import pytest

from fashion_classifier.config import Settings
from fashion_classifier.predlog import InvalidPageState, metrics, open_log
from fashion_classifier.predlog.null_log import NullLog
from fashion_classifier.predlog.records import batch_records
from fashion_classifier.predlog.sqlite_log import SqliteLog
from fashion_classifier.predlog.sqlite_session import connect

from .conftest import make_batch, make_record


@pytest.fixture
def log(tmp_path):
    lg = SqliteLog(Settings(sqlite_path=tmp_path / "log.sqlite3", spool_dir=tmp_path / "spool"))
    yield lg
    lg.close()


def _today():
    return datetime.now(UTC).date()


def test_open_log_picks_the_backend(tmp_path):
    settings = Settings(sqlite_path=tmp_path / "x.sqlite3", spool_dir=tmp_path / "s")
    assert isinstance(open_log(settings), SqliteLog)
    assert isinstance(open_log(Settings(predlog="off")), NullLog)
    assert not (tmp_path / "x.sqlite3").exists()  # opening connects to nothing


def test_start_opens_the_file_before_the_first_prediction(tmp_path):
    # An idle worker must not look disconnected: the alert on fc_predlog_connected would fire.
    metrics.CONNECTED.set(0)
    lg = SqliteLog(Settings(sqlite_path=tmp_path / "log.sqlite3", spool_dir=tmp_path / "spool"))
    try:
        lg.start()
        lg.start()  # idempotent
        assert (tmp_path / "log.sqlite3").is_file()
        assert metrics.CONNECTED._value.get() == 1
    finally:
        lg.close()


def test_round_trip_with_feedback(log):
    recs = [make_record(i, filename=f"f{i}.png") for i in range(5)]
    for rec in recs:
        log.record(rec)
    log.add_feedback(recs[2].id, 9)
    assert log.flush()
    got = log.get(recs[2].id)
    assert got == recs[2] and got.true_label == 9 and got.top3 == recs[2].top3
    assert log.get(uuid.uuid1()) is None
    assert [r.id for r in log.recent(3)] == [r.id for r in reversed(recs)][:3]


def test_day_pages_newest_first_without_gaps_or_repeats(log):
    recs = [make_record(i) for i in range(23)]
    for rec in recs:
        log.record(rec)
    assert log.flush()
    seen, token, pages = [], None, 0
    while True:
        page = log.list_day(_today(), limit=5, page_state=token)
        seen += [r.id for r in page.rows]
        pages += 1
        token = page.page_state
        if token is None:
            break
    assert seen == [r.id for r in reversed(recs)]
    assert pages == 5
    exact = log.list_day(_today(), limit=23)
    assert exact.page_state is None  # no token leading to an empty page


def test_counts_per_label(log):
    for i in range(13):
        log.record(make_record(i))
    assert log.flush()
    counts = log.counts(_today())
    assert counts["class-0"] == 2 and counts["class-9"] == 1 and sum(counts.values()) == 13


@pytest.mark.parametrize("token", ["garbage", "eyJiIjoiY2Fzc2FuZHJhIn0", "e30"])
def test_foreign_page_state_is_rejected(log, token):
    with pytest.raises(InvalidPageState):
        log.list_day(_today(), page_state=token)


def test_rewrites_are_idempotent(log, tmp_path):
    rec = make_record(1)
    log.record(rec)
    log.record(rec)
    assert log.flush()
    conn = sqlite3.connect(tmp_path / "log.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 1


def test_odd_filenames_are_data(log, tmp_path):
    names = ["a'b\"c.png", "日本語 ✓ 🙂.png", "../../etc/passwd", "x" * 10_240, "'); DROP TABLE x;--"]
    recs = [make_record(i, filename=n) for i, n in enumerate(names)]
    for rec in recs:
        log.record(rec)
    assert log.flush()
    assert [log.get(r.id).filename for r in recs] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(("log.sqlite3", "spool"))
    )


def _write_many(path, spool, start, count):
    lg = SqliteLog(Settings(sqlite_path=path, spool_dir=spool))
    for i in range(start, start + count):
        lg.record(make_record(i))
    assert lg.flush(30)
    lg.close()


def test_several_processes_share_one_file(tmp_path):
    ctx = multiprocessing.get_context("fork")
    args = [(tmp_path / "db", tmp_path / "sp", n * 1000, 400) for n in range(3)]
    procs = [ctx.Process(target=_write_many, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lg = SqliteLog(Settings(sqlite_path=tmp_path / "db", spool_dir=tmp_path / "sp"))
    assert sum(lg.counts(_today()).values()) == 1200
    lg.close()


def test_a_file_from_before_rollouts_is_upgraded_and_keeps_its_rows(tmp_path, monkeypatch):
    from fashion_classifier.predlog import sqlite_schema

    path = tmp_path / "old.sqlite3"
    conn = connect(path)
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", sqlite_schema.MIGRATIONS[:1])
    assert sqlite_schema.migrate(conn) == [1]
    conn.execute(
        "INSERT INTO predictions VALUES ('00000000-0000-1000-8000-000000000000', '1582-10-15', 0, "
        "'1582-10-15T00:00:00+00:00', 'old', 1, 'Trouser', 0.9, '[]', 'api', NULL, NULL, NULL, 1.0, NULL)"
    )
    conn.close()
    monkeypatch.undo()
    lg = SqliteLog(Settings(sqlite_path=path, spool_dir=tmp_path / "spool"))
    try:
        assert sqlite_schema.migrate_file(path) == [2]
        old = lg.get(uuid.UUID("00000000-0000-1000-8000-000000000000"))
        assert old.model_version == "old" and (old.arm, old.shadow_version, old.shadow_class) == (None, None, None)
        batch = make_batch(2, shadow=True)
        lg.record_batch(batch)
        assert lg.flush()
        assert lg.get(batch.ids[1]).shadow_version == batch.shadow_version
    finally:
        lg.close()


@pytest.mark.parametrize("shadow", [False, True])
def test_sqlite_log_stores_batches_like_records(tmp_path, shadow):
    log = SqliteLog(Settings(sqlite_path=tmp_path / "log.sqlite3", spool_dir=tmp_path / "spool"))
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


def test_an_overflowing_queue_loses_nothing_in_sqlite(tmp_path):
    """Batches spooled by the request thread (queue full) are replayed into the database."""
    log = SqliteLog(Settings(sqlite_path=tmp_path / "log.sqlite3", spool_dir=tmp_path / "spool", queue_size=8))
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
