"""The Cassandra backend against the real local 2-node cluster (scripts/cassandra-local)."""

from __future__ import annotations

import base64
import dataclasses
import gc
import json
import logging
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fashion_classifier.config import Settings
from fashion_classifier.predlog import InvalidPageState, PredictionRecord, cassandra_schema
from fashion_classifier.predlog.base import PredictionBatch
from fashion_classifier.predlog.cassandra_buckets import place
from fashion_classifier.predlog.cassandra_log import CassandraLog
from fashion_classifier.predlog.cassandra_sink import CassandraSink
from fashion_classifier.predlog.page_tokens import encode_token

from .conftest import cassandra_settings, eventually, make_batch, make_record, stored_ids

pytestmark = pytest.mark.cassandra


@pytest.fixture
def log(keyspace, tmp_path):
    lg = CassandraLog(cassandra_settings(keyspace, tmp_path / "spool"))
    yield lg
    lg.close()


def _connected(lg: CassandraLog, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not lg.connected:
        assert time.monotonic() < deadline, "the log did not connect to the local cluster"
        time.sleep(0.1)


def _all_stored(admin_session, keyspace: str, day, recs: list) -> None:
    ids = stored_ids(admin_session, keyspace, [day])
    assert len(ids) == len(recs) and set(ids) == {r.id for r in recs}


def _labelled(rec):
    """The record once its feedback label is readable (another table, written apart)."""
    assert rec is not None and rec.true_label is not None
    return rec


def test_migration_creates_the_designed_schema(admin_session, keyspace):
    meta = admin_session.cluster.metadata
    admin_session.cluster.refresh_schema_metadata()
    ks = meta.keyspaces[keyspace]
    assert ks.replication_strategy.__class__.__name__ == "NetworkTopologyStrategy"
    assert str(ks.replication_strategy.dc_replication_factors_info["datacenter1"]) == "2"
    table = ks.tables["predictions_by_bucket"]
    assert [c.name for c in table.partition_key] == ["day", "bucket"]
    assert [c.name for c in table.clustering_key] == ["id"]
    assert table.columns["id"].cql_type == "timeuuid"
    assert "CLUSTERING ORDER BY (id DESC)" in table.export_as_string()
    index = ks.tables["buckets_by_day"]
    assert [c.name for c in index.partition_key] == ["day"]
    assert [c.name for c in index.clustering_key] == ["bucket"]
    assert "CLUSTERING ORDER BY (bucket DESC)" in index.export_as_string()
    for name in cassandra_schema.TTL_TABLES:
        options = ks.tables[name].options
        assert "TimeWindowCompactionStrategy" in options["compaction"]["class"]
        assert options["default_time_to_live"] == 90 * 86_400
    for name, cql_type in (
        ("arm", "text"),
        ("shadow_version", "text"),
        ("shadow_class", "int"),
        ("shadow_confidence", "double"),
    ):
        assert table.columns[name].cql_type == cql_type
    assert cassandra_schema.applied_versions(admin_session, keyspace) == [1, 2, 3]
    # idempotent: nothing to apply, nothing altered; a new TTL is applied in place
    assert cassandra_schema.migrate(admin_session, keyspace, "datacenter1", 2, 90) == []
    assert cassandra_schema.migrate(admin_session, keyspace, "datacenter1", 2, 30) == []
    admin_session.cluster.refresh_schema_metadata()
    for name in cassandra_schema.TTL_TABLES:
        assert meta.keyspaces[keyspace].tables[name].options["default_time_to_live"] == 30 * 86_400


def test_migrate_returns_once_every_node_has_the_whole_schema(admin_session, keyspace):
    """migrate runs its changes on one node and waits for agreement once: when it returns (the
    keyspace fixture has just called it), every node has every table, column and TTL."""
    hosts = admin_session.cluster.metadata.all_hosts()
    assert len(hosts) == 2
    for host in hosts:
        tables = admin_session.execute(
            "SELECT table_name, default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s",
            (keyspace,),
            host=host,
        )
        ttls = {row.table_name: row.default_time_to_live for row in tables}
        assert {name: ttls.get(name) for name in cassandra_schema.TTL_TABLES} == dict.fromkeys(
            cassandra_schema.TTL_TABLES, 90 * 86_400
        ), host
        columns = admin_session.execute(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, "predictions_by_bucket"),
            host=host,
        )
        assert {"arm", "shadow_version", "shadow_class", "shadow_confidence"} <= {row.column_name for row in columns}


def test_round_trip_paging_counts_feedback(log, admin_session, keyspace):
    _connected(log)
    recs = [make_record(i, filename=f"img-{i}.png") for i in range(57)]
    for rec in recs:
        log.record(rec)
    log.record(recs[0])  # a replay or retry of the same id is not a second row
    log.add_feedback(recs[5].id, 3)
    assert log.flush()
    today = datetime.now(UTC).date()
    eventually(lambda: _all_stored(admin_session, keyspace, today, recs))
    got = eventually(lambda: _labelled(log.get(recs[5].id)))
    # CQL timestamps keep milliseconds
    expected = dataclasses.replace(recs[5], created_at=recs[5].created_at.replace(microsecond=0))
    assert dataclasses.replace(got, created_at=got.created_at.replace(microsecond=0)) == expected
    assert abs(got.created_at - recs[5].created_at) < timedelta(milliseconds=1)
    assert got.true_label == 3 and got.top3 == recs[5].top3 and got.filename == "img-5.png"
    assert got.created_at.tzinfo is not None
    assert log.get(uuid.uuid1()) is None and log.get(uuid.uuid4()) is None

    def list_all() -> None:
        seen, token = [], None
        while True:
            page = log.list_day(today, limit=20, page_state=token)
            seen += page.rows
            token = page.page_state
            if token is None:
                break
        assert [r.id for r in seen] == [r.id for r in reversed(recs)]
        assert next(r for r in seen if r.id == recs[5].id).true_label == 3

    eventually(list_all)
    assert log.list_day(today, limit=57).page_state is None  # an exactly full last page has no token

    counts = log.counts(today)
    assert sum(counts.values()) == 57 and counts["class-0"] == 6
    assert [r.id for r in log.recent(5)] == [r.id for r in reversed(recs)][:5]


def test_rows_carry_the_default_ttl(log, admin_session, keyspace):
    _connected(log)
    rec = make_record(1)
    log.record(rec)
    assert log.flush()

    def ttl() -> int:
        row = admin_session.execute(
            f"SELECT TTL(model_version) AS ttl FROM {keyspace}.predictions_by_bucket "
            "WHERE day = %s AND bucket = %s AND id = %s",
            (*place(rec.id), rec.id),
        ).one()
        assert row is not None
        return row.ttl

    assert 90 * 86_400 - 60 < eventually(ttl) <= 90 * 86_400


def test_forged_page_states_are_rejected(log):
    _connected(log)
    today = datetime.now(UTC).date()
    for i in range(3):
        log.record(make_record(i))
    assert log.flush()

    def first_page_token() -> str:
        token = log.list_day(today, limit=1).page_state
        assert token is not None
        return token

    token = eventually(first_page_token)
    with pytest.raises(InvalidPageState):
        log.list_day(today.replace(year=2001), page_state=token)  # another day's token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    forged = raw[:16] + raw[16:].replace(b'"before":"', b'"before":"f', 1)[:-1]  # another position
    with pytest.raises(InvalidPageState):
        log.list_day(today, page_state=base64.urlsafe_b64encode(forged).decode())
    unsigned = encode_token(json.loads(raw[16:]))  # the payload without its tag
    with pytest.raises(InvalidPageState):
        log.list_day(today, page_state=unsigned)
    with pytest.raises(InvalidPageState):
        log.list_day(today, page_state="definitely-not-a-token")


def test_ids_without_time_are_refused_not_spooled(log, tmp_path):
    _connected(log)
    log.record(make_record(1, id=uuid.uuid4()))
    assert log.flush()
    assert list((tmp_path / "spool").glob("*.ndjson")) == []


def test_history_and_migrate_commands_read_the_cluster(log, keyspace, tmp_path, monkeypatch, capsys):
    from fashion_classifier.cli import main

    _connected(log)
    recs = [make_record(i, filename=f"h{i}.png") for i in range(3)]
    for rec in recs:
        log.record(rec)
    assert log.flush()
    monkeypatch.setenv("FC_PREDLOG", "cassandra")
    monkeypatch.setenv("FC_CASSANDRA_HOSTS", "127.0.0.1,127.0.0.2")
    monkeypatch.setenv("FC_CASSANDRA_KEYSPACE", keyspace)
    monkeypatch.setenv("FC_SPOOL_DIR", str(tmp_path / "cli-spool"))
    assert main(["migrate"]) == 0
    assert "schema up to date" in capsys.readouterr().out

    def history() -> None:
        assert main(["history", "--limit", "2", "--wait", "30"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 4  # header, rule, two rows, newest first
        assert str(recs[2].id) in lines[2] and "h2.png" in lines[2] and str(recs[1].id) in lines[3]

    eventually(history)


def test_batches_from_the_web_layer_read_back_like_records(log, admin_session, keyspace):
    """The pre-serialized batch path stores what the records of the batch would store."""
    from fashion_classifier.predlog.records import batch_records

    _connected(log)
    batches = [make_batch(n, infos=n % 2 == 0, seed=n, shadow=n == 7) for n in (1, 4, 7)]
    for batch in batches:
        log.record_batch(batch)
    log.record_batch(batches[1])  # the same ids again: no new rows
    assert log.flush()
    records = [rec for batch in batches for rec in batch_records(batch)]
    today = datetime.now(UTC).date()
    eventually(lambda: sorted(stored_ids(admin_session, keyspace, [today])) == sorted(r.id for r in records))
    for rec in records:
        got = eventually(lambda rec=rec: log.get(rec.id) or False)
        # CQL timestamps keep milliseconds
        assert abs(got.created_at - rec.created_at) < timedelta(milliseconds=1)
        assert dataclasses.replace(got, created_at=rec.created_at) == rec


def test_written_rows_are_freed_without_the_cyclic_gc(log):
    """The driver leaves every finished request in a reference cycle (future <-> timer) that only
    the cyclic GC frees. Rows still reachable from it waited for a full collection and made those
    frequent and long: 20-130 ms pauses of a logging worker under load, its p99. Once written,
    the rows must be freed by reference counting alone."""
    _connected(log)

    def alive() -> int:
        return sum(isinstance(o, (PredictionRecord, PredictionBatch)) for o in gc.get_objects())

    gc.collect()
    before = alive()
    gc.disable()
    try:
        for i in range(20):
            log.record(make_record(i))
            log.record_batch(make_batch(5, seed=i))
        assert log.flush()
        eventually(lambda: alive() - before == 0, timeout=5)
    finally:
        gc.enable()


def test_contact_points_that_do_not_resolve_yet_are_retried(monkeypatch, caplog):
    """In Kubernetes the classifier may start before the Cassandra pods exist, so before their
    names resolve: the driver then refuses to build a Cluster at all. The connect loop must keep
    retrying (it once died on that, and every row stayed in the spool). DNS is the one thing
    replaced here: no lookup may leave the machine."""
    real = socket.getaddrinfo
    name = "cassandra-0.cassandra.fc-test"

    def no_such_name(host, *args, **kwargs):
        if host == name:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    caplog.set_level(logging.WARNING, logger="fashion_classifier.predlog.cassandra_sink")
    sink = CassandraSink(Settings(cassandra_hosts=(name,)))
    try:
        deadline = time.monotonic() + 10
        while "not reachable yet" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "not reachable yet" in caplog.text
        time.sleep(1.5)  # past the first retry (0.5 s, then 1 s)
        assert sink._thread.is_alive() and sink.session is None
    finally:
        sink.close()
