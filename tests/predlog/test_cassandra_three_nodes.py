"""The bucketed log on a 3-node cluster (RF 2), the smallest where a node holds only part of a day:
a day's partitions spread over every node, and a node killed under load loses nothing.

The cluster is its own (127.0.0.5-7, own data dir), started by this module and stopped after it;
the CI stage runs it after the 2-node stage has stopped its cluster.
"""

from __future__ import annotations

import collections
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from fashion_classifier.predlog import cassandra_counts, cassandra_schema
from fashion_classifier.predlog.cassandra_buckets import (
    SLOTS_PER_DAY,
    bucket_bytes,
    day_bytes,
    routing_key,
    shard_of,
)
from fashion_classifier.predlog.cassandra_log import CassandraLog

from .conftest import (
    LocalCluster,
    cassandra_settings,
    connect_admin,
    eventually,
    id_at,
    make_batch,
    running,
    wait_until_settled,
)
from .test_cassandra_outages import OUTAGE_SECONDS, Load, Server, _assert_nothing_lost, _days, _until

pytestmark = [pytest.mark.cassandra3, pytest.mark.slow]

HOSTS3 = ("127.0.0.5", "127.0.0.6", "127.0.0.7")
WRITERS = 4  # writer processes of the synthetic day: 4 shards of every minute


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory) -> LocalCluster:
    work = tmp_path_factory.getbasetemp().parent / "cassandra3"  # kept across sessions like the 2-node data
    env = {"FC_CASSANDRA_NODES": "3", "FC_CASSANDRA_IP_OFFSET": "4", "FC_CASSANDRA_DATA": str(work)}
    yield from running(LocalCluster(HOSTS3, env))


@pytest.fixture(scope="module")
def admin3(cluster3):
    session = connect_admin(HOSTS3)
    yield session
    session.cluster.shutdown()


@pytest.fixture
def keyspace3(admin3, request) -> str:
    name = f"t3_{request.node.name[:24]}_{uuid.uuid4().hex[:6]}".lower()
    wait_until_settled(admin3)
    cassandra_schema.migrate(admin3, name, "datacenter1", 2, 90)
    return name


def _rows(session, keyspace: str, day) -> list[uuid.UUID]:
    stmt = SimpleStatement(
        f"SELECT day, id FROM {keyspace}.predictions_by_bucket", fetch_size=5000, consistency_level=ConsistencyLevel.ALL
    )
    return [row.id for row in session.execute(stmt, timeout=60) if row.day.date() == day]


def test_a_days_partitions_spread_over_every_node_and_count_to_their_rows(admin3, keyspace3, tmp_path, monkeypatch):
    monkeypatch.setattr(cassandra_counts, "SETTLE", timedelta(0))  # yesterday's buckets: settled once marked
    day = datetime.now(UTC).date() - timedelta(days=1)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    lows: list[int] = []
    while len(lows) < WRITERS:  # writer processes on distinct shards
        low = uuid.uuid4().int
        if shard_of(id_at(midnight, low)) not in {shard_of(id_at(midnight, other)) for other in lows}:
            lows.append(low)
    log = CassandraLog(cassandra_settings(keyspace3, tmp_path / "spool", cassandra_hosts=HOSTS3))
    log.start()
    try:
        eventually(lambda: log.connected, timeout=30)
        # Every minute of the day, 3 rows from each writer: what a day of steady traffic leaves.
        for minute in range(SLOTS_PER_DAY):
            for w, low in enumerate(lows):
                at = midnight + timedelta(minutes=minute, seconds=w)
                log.record_batch(make_batch(3, ids=[id_at(at + timedelta(microseconds=k), low) for k in range(3)]))
            if minute % 100 == 99:
                assert log.flush(timeout=120)  # within the queue's bound: nothing goes to the spool
        assert log.flush(timeout=120)
        assert not list((tmp_path / "spool").glob("*.ndjson"))
        rows = _rows(admin3, keyspace3, day)  # read at ALL
        assert len(rows) == SLOTS_PER_DAY * WRITERS * 3
        buckets = [
            r.bucket
            for r in admin3.execute(
                SimpleStatement(
                    f"SELECT bucket FROM {keyspace3}.buckets_by_day WHERE day = %s AND bucket >= 0",
                    consistency_level=ConsistencyLevel.ALL,
                ),
                (day,),
            )
        ]
        assert len(buckets) == SLOTS_PER_DAY * WRITERS

        metadata = admin3.cluster.metadata
        owned: collections.Counter[str] = collections.Counter()
        for bucket in buckets:
            key = routing_key(day_bytes(day), bucket_bytes(bucket))
            for host in metadata.get_replicas(keyspace3, key):
                owned[host.address] += 1
        print(f"\npartitions per node (RF 2, {len(buckets)} partitions): {dict(owned)}")
        assert set(owned) == set(HOSTS3)
        # Balanced tokens and 2 of 3 replicas: each node holds ~2/3 of the partitions.
        assert min(owned.values()) > 0.5 * len(buckets)

        log.roll_up()
        counts = log.counts(day)
        assert sum(counts.values()) == len(rows)
    finally:
        log.close()


def test_a_node_killed_under_load_loses_nothing_and_counts_equal_rows(
    cluster3, admin3, keyspace3, model_store, tmp_path
):
    server = Server(keyspace3, model_store, tmp_path, hosts=HOSTS3)
    try:
        load = Load(server.url)
        _until(lambda: load.count > 200, 60, "200 answered predictions")
        cluster3.kill(3)
        count_at_kill = load.count
        _until(lambda: load.count > count_at_kill + 300, OUTAGE_SECONDS * 2, "300 predictions with node 3 down")
        load.stop()
        cluster3.restore()
        wait_until_settled(admin3)
        days = _days(load.ids)

        def all_rows() -> list[uuid.UUID]:
            stored = [i for day in days for i in _rows(admin3, keyspace3, day)]
            assert len(stored) >= len(load.ids)  # hints and spool replays may take a while
            return stored

        _assert_nothing_lost(load, eventually(all_rows, timeout=90), server)
        log = CassandraLog(cassandra_settings(keyspace3, tmp_path / "spool", cassandra_hosts=HOSTS3))
        log.start()
        try:
            eventually(lambda: log.connected, timeout=30)
            for day in days:
                assert sum(log.counts(day).values()) == len(_rows(admin3, keyspace3, day))
        finally:
            log.close()
    finally:
        server.stop()
