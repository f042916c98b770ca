"""Fixtures of the prediction-log tests: record factories and the real local Cassandra cluster.

The cluster comes from ``scripts/cassandra-local`` once per session: reused when the script
reports every node up, otherwise started (fresh data) and stopped again at the end. It never
skips: a cluster that cannot start fails the tests that need it, with the script's log tail.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from fashion_classifier.config import PROJECT_ROOT, Settings
from fashion_classifier.predlog.base import PredictionBatch, PredictionRecord
from fashion_classifier.predlog.limits import MAX_FILENAME_CHARS
from fashion_classifier.timeuuid import TimeIds

SCRIPT = PROJECT_ROOT / "scripts" / "cassandra-local"
HOSTS = ("127.0.0.1", "127.0.0.2")
TEST_KEYSPACE_PREFIX = "t_"

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0) -> T:
    """``check()``'s result once it neither fails an assertion nor returns False.

    Reads and writes are LOCAL_ONE (``cassandra_session``): a write is acknowledged by one replica,
    and a read right after it may reach the other, which has not applied it yet (seen in CI: a
    feedback label read back as None a moment after it was written).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            assert result is not False
            return result
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def new_id() -> uuid.UUID:
    # uuid1() falls back to Python's random module here, whose state forked processes share:
    # fresh OS randomness keeps ids unique across the writer processes of a test.
    return uuid.uuid1(clock_seq=int.from_bytes(os.urandom(2), "big") >> 2)


def id_at(moment: datetime, low: int | None = None) -> uuid.UUID:
    """A version-1 id made at ``moment``; ``low`` (clock sequence and node) picks its process."""
    from fashion_classifier.timeuuid import EPOCH_TICKS, at_ticks

    if low is None:
        low = new_id().int & ((1 << 64) - 1)
    t = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 10 + EPOCH_TICKS
    return at_ticks(t, (low & ((1 << 62) - 1)) | (1 << 63))


def make_record(i: int = 0, filename: str | None = "shirt.png", **changes) -> PredictionRecord:
    rec = PredictionRecord(
        id=new_id(),
        created_at=datetime.now(UTC),
        model_version="20260101T000000Z-mlp",
        predicted_class=i % 10,
        label=f"class-{i % 10}",
        confidence=0.5 + (i % 5) / 10,
        top3=((f"class-{i % 10}", 0.5), ("b", 0.3), ("c", 0.1)),
        source="api",
        filename=filename,
        image_width=28,
        image_height=28,
        latency_ms=1.25,
        client_hash="abc123",
    )
    return dataclasses.replace(rec, **changes) if changes else rec


NAMES = ("T-shirt/top", "Trouser", 'Pull"over', "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class Info:
    filename: str | None
    width: int | None
    height: int | None


def make_batch(
    n: int = 3, infos: bool = True, created_us: int | None = None, ids=None, seed: int = 0, shadow: bool = False
):
    """A PredictionBatch as the web layer makes one: ids from one process (one shard); with
    ``shadow``, as a rollout's shadow leaves it (answered by the current arm, a candidate's
    probabilities beside)."""
    rng = np.random.default_rng(seed)
    logits = rng.random((n, 10), dtype=np.float32)
    probs = (logits / logits.sum(axis=1, keepdims=True)).astype(np.float32)
    shadow_probs = np.roll(probs, 1, axis=1) if shadow else None
    top3 = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    names = ['odd "name" ../日本.png', "x" * (MAX_FILENAME_CHARS + 10), None]
    return PredictionBatch(
        ids=ids or _IDS.take(n),
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
        arm="current" if shadow else None,
        shadow_version="20260102T000000Z-compact" if shadow else None,
        shadow_probs=shadow_probs,
    )


_IDS = TimeIds()


class LocalCluster:
    """Drives scripts/cassandra-local; every call waits for the script to finish. ``env`` selects
    another cluster (FC_CASSANDRA_NODES, _IP_OFFSET, _DATA) than the default 2-node one."""

    def __init__(self, hosts: tuple[str, ...] = HOSTS, env: dict[str, str] | None = None) -> None:
        self.hosts = hosts
        self._env = {**os.environ, **(env or {})}

    def run(self, *args: str, timeout: float = 400) -> str:
        proc = subprocess.run(
            [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False, env=self._env
        )
        if proc.returncode != 0:
            pytest.fail(
                f"scripts/cassandra-local {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
            )
        return proc.stdout

    def all_up(self) -> bool:
        proc = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True, check=False, env=self._env)
        return proc.returncode == 0

    def kill(self, node: int) -> None:
        self.run("kill", str(node))

    def stop(self, node: int | None = None) -> None:
        self.run("stop", *([str(node)] if node else []))

    def start(self) -> None:
        """Start whatever is down, keeping data."""
        self.run("start")

    def restore(self) -> None:
        if not self.all_up():
            self.start()


def running(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The cluster, started (with fresh data when no node runs) unless every node is up; stopped
    again at the end when started here."""
    started_here = False
    if not cluster.all_up():
        status = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True, env=cluster._env).stdout
        fresh = () if " up " in status or "starting" in status else ("--fresh",)
        t0 = time.monotonic()
        out = cluster.run("start", *fresh)
        print(f"\n{out.strip()}\n(cluster start {time.monotonic() - t0:.1f} s)")
        started_here = True
    yield cluster
    if started_here and os.environ.get("FC_TEST_KEEP_CASSANDRA") != "1":
        cluster.stop()


def connect_admin(hosts: tuple[str, ...]):
    """A driver session for checking what reached a cluster (not the code under test)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy

    policy = DCAwareRoundRobinPolicy("datacenter1")
    profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=30)
    cluster = Cluster(
        list(hosts),
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        reconnection_policy=ExponentialReconnectionPolicy(0.5, 2.0),
    )
    return cluster.connect()


@pytest.fixture(scope="session")
def cassandra_cluster() -> Iterator[LocalCluster]:
    yield from running(LocalCluster())


@pytest.fixture(scope="session")
def admin_session(cassandra_cluster):
    session = connect_admin(HOSTS)
    _drop_test_keyspaces(session)
    yield session
    session.cluster.shutdown()


def _drop_test_keyspaces(session) -> None:
    """Drop the keyspaces an earlier session's tests left (a kept cluster, FC_TEST_KEEP_CASSANDRA=1).

    Test keyspaces are dropped here, at a calm moment, and never right after a test: a DROP while
    a restarted node is still catching up can leave that node on its old schema for good (seen in
    CI: node 2 kept a dropped keyspace and the next test waited 60 s for schema agreement in vain).
    """
    wait_until_settled(session)
    wait_for_hints_delivered(session)
    for keyspace in list(session.cluster.metadata.keyspaces):  # the driver refreshes it meanwhile
        if keyspace.startswith(TEST_KEYSPACE_PREFIX):
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    wait_until_settled(session)


def cassandra_settings(keyspace: str, spool_dir: Path, **changes) -> Settings:
    return dataclasses.replace(
        Settings(),
        predlog="cassandra",
        cassandra_keyspace=keyspace,
        spool_dir=spool_dir,
        **{"cassandra_hosts": HOSTS, **changes},
    )


def wait_until_settled(session, timeout: float = 60.0) -> None:
    """Every node up in the driver's view and on one schema version.

    A node restarted by the previous test's teardown answers CQL before the driver has marked it
    up again. The driver then waits for schema agreement among the other nodes only. Once it
    marks the restarted node up, it may send that node a statement on a keyspace it does not
    have yet (seen in CI: "keyspace ... does not exist" from the migration's first insert).
    """
    cluster = session.cluster
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hosts = cluster.metadata.all_hosts()
        if len(hosts) == len(cluster.contact_points) and all(host.is_up for host in hosts):
            try:
                if cluster.control_connection.wait_for_schema_agreement(wait_time=5):
                    return
            except Exception as exc:  # noqa: BLE001 - the control connection may be reconnecting
                print(f"schema agreement check failed, retrying: {exc}")
        time.sleep(0.5)
    pytest.fail(f"the cluster did not settle in {timeout:.0f} s: hosts {[(h.address, h.is_up) for h in hosts]}")


def wait_for_hints_delivered(session, timeout: float = 60.0) -> None:
    """No node holds hints any more (``system_views.pending_hints`` empty on every node).

    A node that was down gets the writes it missed as hints once it is back. Cassandra 5.0 can
    fail to drop a keyspace whose table is still receiving them ("Unknown CF" in the schema
    merge), and that node then keeps a schema of its own: seen in CI, where the next test's
    keyspace fixture waited 60 s for schema agreement in vain.
    """
    from cassandra.query import SimpleStatement

    query = SimpleStatement("SELECT host_id FROM system_views.pending_hints")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hosts = [h for h in session.cluster.metadata.all_hosts() if h.is_up]
        try:
            if not any(list(session.execute(query, host=host)) for host in hosts):
                return
        except Exception as exc:  # noqa: BLE001 - a node may be reconnecting; ask again
            print(f"pending hints check failed, retrying: {exc}")
        time.sleep(0.5)
    print(f"hints still pending after {timeout:.0f} s")


@pytest.fixture
def keyspace(admin_session, request) -> str:
    """A fresh, migrated keyspace for one test; the next session's start drops it."""
    from fashion_classifier.predlog import cassandra_schema

    name = f"{TEST_KEYSPACE_PREFIX}{request.node.name[:30]}_{uuid.uuid4().hex[:6]}".lower()
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    wait_until_settled(admin_session)
    cassandra_schema.migrate(admin_session, name, "datacenter1", 2, 90)
    return name


def stored_ids(session, keyspace: str, days, consistency=None) -> list[uuid.UUID]:
    """All prediction ids stored for the given days, found by scanning the table (not through the
    bucket index, whose marks the tests check too).

    Consistency ALL by default: a node restarted a moment ago may not have its hints yet, and
    ALL reads repair that. Pass ONE while a node is down.
    """
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    consistency = ConsistencyLevel.ALL if consistency is None else consistency
    wanted = set(days)
    stmt = SimpleStatement(
        f"SELECT day, id FROM {keyspace}.predictions_by_bucket", fetch_size=5000, consistency_level=consistency
    )
    return [row.id for row in session.execute(stmt) if row.day.date() in wanted]  # the driver's Date


def indexed_buckets(session, keyspace: str, days) -> set[tuple]:
    """The (day, bucket) pairs the bucket index lists for the given days (not the hours), read at ALL."""
    from cassandra import ConsistencyLevel
    from cassandra.query import SimpleStatement

    stmt = SimpleStatement(
        f"SELECT day, bucket FROM {keyspace}.buckets_by_day WHERE day = %s AND bucket >= 0",
        consistency_level=ConsistencyLevel.ALL,
    )
    return {(row.day.date(), row.bucket) for day in set(days) for row in session.execute(stmt, (day,))}
