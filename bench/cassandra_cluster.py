"""The local 2-node Cassandra cluster (scripts/cassandra-local) as the peers and soak benchmarks
use it: start, kill and restart nodes, create a keyspace with the project's own migration, read
back what the prediction log stored."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cassandra-local"
HOSTS = ("127.0.0.1", "127.0.0.2")


class ClusterError(RuntimeError):
    pass


def script(*args: str, timeout: float = 400, nice: int = 0) -> str:
    """Run ``scripts/cassandra-local ARGS``; raise with its output when it fails.

    ``nice``: CPU priority of the nodes it starts (``FC_CASSANDRA_NICE``)."""
    environ = {**os.environ, "FC_CASSANDRA_NICE": str(nice)}
    proc = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False, env=environ
    )
    if proc.returncode != 0:
        raise ClusterError(
            f"cassandra-local {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def all_up() -> bool:
    return subprocess.run([str(SCRIPT), "status"], capture_output=True, check=False).returncode == 0


def ensure_up() -> float | None:
    """Start the nodes that are down; returns the seconds it took, None when all were up already.

    (The script closes inherited descriptors before it execs a JVM, so a node started under
    ``flock /tmp/fc-heavy.lock`` does not keep holding the lock.)
    """
    if all_up():
        return None
    started = time.monotonic()
    script("start")
    return time.monotonic() - started


def node_pids() -> dict[int, int]:
    """Node number -> JVM pid of the nodes that are up."""
    pids = {}
    for line in subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "up" and parts[2] == "pid":
            pids[int(parts[0].removeprefix("node"))] = int(parts[3])
    return pids


def env(keyspace: str) -> dict[str, str]:
    """``FC_*`` settings of a server logging to ``keyspace`` on the local cluster."""
    return {"FC_CASSANDRA_HOSTS": ",".join(HOSTS), "FC_CASSANDRA_KEYSPACE": keyspace}


def migrate(keyspace: str) -> None:
    """Create ``keyspace`` with ``fashion-classifier migrate`` (idempotent)."""
    environ = {**os.environ, **env(keyspace), "FC_PREDLOG": "cassandra"}
    proc = subprocess.run(
        [sys.executable, "-m", "fashion_classifier.cli", "migrate"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise ClusterError(f"migrate {keyspace} failed: {proc.stderr.strip()[-2000:]}")


class Admin:
    """A driver session for checking what reached the cluster (not the code under test)."""

    def __init__(self) -> None:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy

        profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy("datacenter1"), request_timeout=60)
        self._cluster = Cluster(
            list(HOSTS),
            protocol_version=5,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            reconnection_policy=ExponentialReconnectionPolicy(0.5, 2.0),
        )
        self.session = self._cluster.connect()

    def drop(self, keyspace: str) -> None:
        self.session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)

    def truncate(self, keyspace: str) -> None:
        for table in ("predictions_by_bucket", "buckets_by_day"):
            self.session.execute(f"TRUNCATE {keyspace}.{table}", timeout=120)

    def stored_ids(self, keyspace: str, days: Iterable[date]) -> list[uuid.UUID]:
        """Every prediction id stored for ``days``, by a scan of the table read at consistency ALL:
        a node restarted a moment ago may still be missing hinted writes, and an ALL read sees (and
        repairs) them."""
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        wanted = set(days)
        stmt = SimpleStatement(
            f"SELECT day, id FROM {keyspace}.predictions_by_bucket",
            fetch_size=5000,
            consistency_level=ConsistencyLevel.ALL,
        )
        return [row.id for row in self.session.execute(stmt, timeout=120) if row.day.date() in wanted]

    def count_day(self, keyspace: str, day: date) -> int:
        return len(self.stored_ids(keyspace, [day]))

    def close(self) -> None:
        self._cluster.shutdown()
