"""Reads of the bucketed log against the real local cluster: history merged across buckets in
Cassandra's own order, counts from rollups that stay equal to the rows through replays and
retries, and a keyspace of the one-partition-per-day schema upgraded in place."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from fashion_classifier.predlog import cassandra_counts, cassandra_schema
from fashion_classifier.predlog.base import PredictionLogUnavailable
from fashion_classifier.predlog.cassandra_buckets import SHARDS, place
from fashion_classifier.predlog.cassandra_history import newest_first
from fashion_classifier.predlog.cassandra_log import CassandraLog
from fashion_classifier.timeuuid import moment

from .conftest import (
    cassandra_settings,
    eventually,
    id_at,
    indexed_buckets,
    make_batch,
    make_record,
    stored_ids,
    wait_until_settled,
)

pytestmark = pytest.mark.cassandra


@pytest.fixture
def log(keyspace, tmp_path):
    lg = CassandraLog(cassandra_settings(keyspace, tmp_path / "spool"))
    lg.counts_cache.fresh = 0  # every count reads the cluster
    lg.start()
    eventually(lambda: lg.connected, timeout=30)
    yield lg
    lg.close()


def _past_records(minutes: list[int], per_minute: int, processes: int) -> list:
    """Records with ids in past minutes of today (already settled), from several processes."""
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)  # one hour, one day
    lows = [uuid.uuid4().int & ((1 << 64) - 1) for _ in range(processes)]
    recs = []
    for m in minutes:
        for i in range(per_minute):
            moment = start + timedelta(minutes=m, seconds=i * 59 / per_minute, microseconds=i)
            recs.append(make_record(i, id=id_at(moment, lows[i % processes])))
    return recs


def _write(log: CassandraLog, recs) -> None:
    for rec in recs:
        log.record(rec)
    assert log.flush()


def test_history_pages_merge_every_bucket_in_cassandras_order(log, admin_session, keyspace):
    recs = _past_records(minutes=[1, 2, 5, 40], per_minute=23, processes=5)
    _write(log, recs)
    day = place(recs[0].id)[0]
    eventually(lambda: len(stored_ids(admin_session, keyspace, [day])) == len(recs))
    buckets = {place(r.id) for r in recs}
    assert len({b % SHARDS for _, b in buckets}) > 1  # several shards per minute
    assert eventually(lambda: indexed_buckets(admin_session, keyspace, [day]) == buckets)
    # Cassandra's order of timeuuids, from one partition holding them all (the legacy table)
    admin_session.execute(
        f"CREATE TABLE {keyspace}.order_check (p int, id timeuuid, PRIMARY KEY (p, id)) "
        "WITH CLUSTERING ORDER BY (id DESC)"
    )
    for rec in recs:
        admin_session.execute(f"INSERT INTO {keyspace}.order_check (p, id) VALUES (0, %s)", (rec.id,))
    expected = [
        row.id
        for row in admin_session.execute(
            SimpleStatement(
                f"SELECT id FROM {keyspace}.order_check WHERE p = 0", consistency_level=ConsistencyLevel.ALL
            )
        )
    ]
    assert expected == sorted((r.id for r in recs), key=newest_first, reverse=True)

    def pages(limit: int) -> list:
        seen, token = [], None
        while True:
            page = log.list_day(day, limit=limit, page_state=token)
            assert len(page.rows) <= limit
            seen += [r.id for r in page.rows]
            token = page.page_state
            if token is None:
                return seen

    for limit in (7, 23, 50, len(recs)):
        assert eventually(lambda limit=limit: pages(limit) == expected)
    assert log.get(recs[17].id).id == recs[17].id


def test_counts_come_from_rollups_and_equal_the_rows_after_replays_and_retries(
    log, admin_session, keyspace, monkeypatch
):
    # Rows of past minutes: their writes are late, so each bucket settles SETTLE after its mark.
    monkeypatch.setattr(cassandra_counts, "SETTLE", timedelta(0))
    recs = _past_records(minutes=[3, 4], per_minute=40, processes=3)
    _write(log, recs)
    day = place(recs[0].id)[0]
    eventually(lambda: len(stored_ids(admin_session, keyspace, [day])) == len(recs))

    def expected(rows) -> dict[str, int]:
        out: dict[str, int] = {}
        for rec in rows:
            out[rec.label] = out.get(rec.label, 0) + 1
        return dict(sorted(out.items()))

    assert log.roll_up() == len({place(r.id) for r in recs})  # settled: each bucket rolled up once
    assert log.roll_up() == 0
    rows_read = []
    real_read = cassandra_counts.Rollups._read
    monkeypatch.setattr(cassandra_counts.Rollups, "_read", lambda self, *a: rows_read.append(1) or real_read(self, *a))
    assert log.counts(day) == expected(recs)
    assert rows_read == []  # from the rollups alone

    # A spool replay of rows already there, a retried write, and late rows of the same buckets:
    # each marks its bucket, whose rollup is then stale and counted again from the rows.
    more = [dataclasses.replace(r, id=id_at(moment(r.id) + timedelta(microseconds=500), r.id.int)) for r in recs[:10]]
    assert {place(r.id) for r in more} <= {place(r.id) for r in recs}
    _write(log, recs[:25] + recs[:25] + more)
    eventually(lambda: len(stored_ids(admin_session, keyspace, [day])) == len(recs) + len(more))
    log.count_budget = 0.0  # stale buckets to count from rows, no time to: a 503, not a stalled worker
    with pytest.raises(PredictionLogUnavailable, match="stopped after 0 s"):
        log.counts(day)
    log.count_budget = 10.0
    assert log.counts(day) == expected(recs + more)
    assert rows_read  # stale buckets were read again, and their new rollups stored
    rows_read.clear()
    assert log.counts(day) == expected(recs + more) and rows_read == []


def test_counts_of_open_buckets_are_read_from_rows_and_not_stored(log, admin_session, keyspace):
    batch = make_batch(12)  # now: its minute is still open, or settled less than 30 s ago
    log.record_batch(batch)
    assert log.flush()
    day, bucket = place(batch.ids[0])
    eventually(lambda: len(stored_ids(admin_session, keyspace, [day])) == 12)
    assert sum(log.counts(day).values()) == 12
    row = admin_session.execute(
        f"SELECT counted_at FROM {keyspace}.buckets_by_day WHERE day = %s AND bucket = %s", (day, bucket)
    ).one()
    assert row is not None and row.counted_at is None


def test_a_label_lands_in_its_predictions_row_whichever_comes_first_and_never_alone(log, admin_session, keyspace):
    early, late, never = _past_records(minutes=[7], per_minute=3, processes=1)
    log.add_feedback(early.id, 4)  # before its prediction's row (a spooled row replayed later)
    assert log.flush()
    _write(log, [early, late])
    log.add_feedback(late.id, 5)
    log.add_feedback(never.id, 6)  # a prediction that never reached the log
    assert log.flush()
    day = place(early.id)[0]
    assert eventually(lambda: [(r.id, r.true_label) for r in log.list_day(day).rows] == [(late.id, 5), (early.id, 4)])
    assert log.get(early.id).true_label == 4 and log.get(never.id) is None
    assert sum(log.counts(day).values()) == 2


def test_a_keyspace_of_the_day_partition_schema_is_upgraded_in_place(admin_session, tmp_path, monkeypatch):
    """Migration 2 on a keyspace written by migration 1's schema: old rows stay readable (history,
    lookup, counts), new rows go to the new table only."""
    keyspace = f"t_upgrade_{uuid.uuid4().hex[:6]}"
    wait_until_settled(admin_session)
    monkeypatch.setattr(cassandra_schema, "MIGRATIONS", cassandra_schema.MIGRATIONS[:1])
    cassandra_schema.migrate(admin_session, keyspace, "datacenter1", 2, 90)
    old = _past_records(minutes=[0, 1], per_minute=6, processes=2)
    insert = admin_session.prepare(
        f"INSERT INTO {keyspace}.predictions_by_day (day, id, created_at, model_version, predicted_class, label, "
        "confidence, top3, source, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    for r in old:
        admin_session.execute(
            insert,
            (
                place(r.id)[0],
                r.id,
                r.created_at,
                r.model_version,
                r.predicted_class,
                r.label,
                r.confidence,
                list(r.top3),
                r.source,
                r.latency_ms,
            ),
        )
    admin_session.execute(f"INSERT INTO {keyspace}.feedback_by_id (id, true_label) VALUES (%s, 7)", (old[3].id,))
    monkeypatch.undo()
    assert cassandra_schema.migrate(admin_session, keyspace, "datacenter1", 2, 90) == [2, 3]

    log = CassandraLog(cassandra_settings(keyspace, tmp_path / "spool"))
    log.counts_cache.fresh = 0
    log.start()
    try:
        eventually(lambda: log.connected, timeout=30)
        new = _past_records(minutes=[2], per_minute=6, processes=2)
        _write(log, new)
        log.add_feedback(old[4].id, 8)  # feedback on an old row, after the upgrade: a label in the new table
        assert log.flush()
        day = place(old[0].id)[0]
        everything = sorted((r.id for r in old + new), key=newest_first, reverse=True)
        assert eventually(lambda: [r.id for r in log.list_day(day, limit=100).rows] == everything)
        page = log.list_day(day, limit=5)
        assert [r.id for r in page.rows] == everything[:5]
        assert [r.id for r in log.list_day(day, limit=100, page_state=page.page_state).rows] == everything[5:]
        assert log.get(old[3].id).label == old[3].label and log.get(old[3].id).true_label == 7
        page_all = {r.id: r.true_label for r in log.list_day(day, limit=100).rows}
        assert page_all[old[3].id] == 7 and page_all[old[4].id] == 8 and len(page_all) == len(old) + len(new)
        assert log.get(old[4].id).true_label == 8
        assert sum(log.counts(day).values()) == len(old) + len(new)
        legacy = admin_session.execute(
            SimpleStatement(
                f"SELECT COUNT(*) AS n FROM {keyspace}.predictions_by_day WHERE day = %s",
                consistency_level=ConsistencyLevel.ALL,
            ),
            (day,),
        ).one()
        assert legacy.n == len(old)  # nothing written twice
    finally:
        log.close()


def test_a_log_started_before_its_keyspace_exists_spools_until_the_migration_runs(admin_session, tmp_path, caplog):
    """A first install whose migrate Job has not run yet: the keyspace does not exist. The log keeps
    trying (the driver's error then lists hosts, not errors per host), and writes once migrated."""
    keyspace = f"t_nokeyspace_{uuid.uuid4().hex[:6]}"
    log = CassandraLog(cassandra_settings(keyspace, tmp_path / "spool"))
    log.start()
    try:
        batch = make_batch(2)
        log.record_batch(batch)
        assert log.flush()  # spooled: not connected
        eventually(lambda: f"Unable to connect to any servers using keyspace '{keyspace}'" in caplog.text)
        wait_until_settled(admin_session)
        cassandra_schema.migrate(admin_session, keyspace, "datacenter1", 2, 90)
        eventually(lambda: log.connected, timeout=30)  # the connect loop retries within 10 s
        assert eventually(lambda: log.get(batch.ids[1]) or False, timeout=30)  # replayed from the spool
    finally:
        log.close()


def test_a_log_newer_than_its_schema_spools_until_the_migration_runs(admin_session, tmp_path, monkeypatch, caplog):
    """A release started before its migration (the chart's migrate Job runs after a first install):
    it says what is missing, keeps every row in the spool, and writes them once migrated."""
    keyspace = f"t_columns_{uuid.uuid4().hex[:6]}"
    wait_until_settled(admin_session)
    monkeypatch.setattr(cassandra_schema, "MIGRATIONS", cassandra_schema.MIGRATIONS[:2])
    cassandra_schema.migrate(admin_session, keyspace, "datacenter1", 2, 90)
    monkeypatch.undo()
    log = CassandraLog(cassandra_settings(keyspace, tmp_path / "spool"))
    log.start()
    try:
        batch = make_batch(4, shadow=True)
        log.record_batch(batch)
        assert log.flush()  # spooled: not connected
        eventually(lambda: "predictions_by_bucket.arm" in caplog.text and "fashion-classifier migrate" in caplog.text)
        assert not log.connected
        assert cassandra_schema.migrate(admin_session, keyspace, "datacenter1", 2, 90) == [3]
        eventually(lambda: log.connected, timeout=30)  # the connect loop retries within 10 s
        got = eventually(lambda: log.get(batch.ids[3]) or False, timeout=30)  # replayed from the spool
        assert (got.arm, got.shadow_version) == ("current", batch.shadow_version)
        assert got.shadow_class == (got.predicted_class + 1) % 10
    finally:
        log.close()
