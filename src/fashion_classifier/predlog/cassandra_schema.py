"""Versioned, idempotent schema of the Cassandra prediction log (`fashion-classifier migrate`).

Tables follow the queries (migration 2; docs/prediction-log.md has the reasoning and numbers):

* ``predictions_by_bucket``: a UTC day spread over one-minute x shard partitions
  ``((day, bucket), id)``, the bucket computed from the id (``cassandra_buckets``), rows newest
  first. A lookup by id is one read; a writer batch is one partition. The true label sent as
  feedback is a column of the prediction's row (``true_label``, ``feedback_at``), so a history
  page reads its labels with its rows; a label whose row was never written is not a prediction.
* ``buckets_by_day``: one row per written bucket of a day, newest first: where a history page
  finds its partitions, and the per-bucket count rollups, plus one row per hour (negative
  buckets) summing that hour's. ``written_at`` is set by the writers (on a process's first write
  to a bucket and on every late write, for the bucket and its hour), ``counts``/``counted_at`` by
  whoever counted them once settled. A count is recomputed from rows, never
  incremented, so spool replays and retried writes cannot count a row twice.
* ``predictions_by_day`` and ``feedback_by_id`` (migration 1): one partition per day, feedback by
  id. No longer written; read beside the new tables while they hold rows (at most
  FC_CASSANDRA_TTL_DAYS after migration 2).

Tables expire rows after the default TTL (FC_CASSANDRA_TTL_DAYS) and use
TimeWindowCompactionStrategy with one-day windows: whole SSTables drop when their window expires.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from cassandra import OperationTimedOut
from cassandra.cluster import NoHostAvailable, ResultSet, Session
from cassandra.pool import Host

log = logging.getLogger(__name__)

_TWCS = "{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}"

# (version, description, CQL statements); {ks} is the keyspace. Append only.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "predictions by day, feedback by id",
        (
            """CREATE TABLE IF NOT EXISTS {ks}.predictions_by_day (
                day date,
                id timeuuid,
                created_at timestamp,
                model_version text,
                predicted_class int,
                label text,
                confidence double,
                top3 frozen<list<tuple<text, double>>>,
                source text,
                filename text,
                image_width int,
                image_height int,
                latency_ms double,
                client_hash text,
                PRIMARY KEY ((day), id)
            ) WITH CLUSTERING ORDER BY (id DESC)
              AND compaction = """
            + _TWCS,
            """CREATE TABLE IF NOT EXISTS {ks}.feedback_by_id (
                id timeuuid PRIMARY KEY,
                true_label int,
                created_at timestamp
            ) WITH compaction = """
            + _TWCS,
        ),
    ),
    (
        2,
        "predictions by (day, minute x shard) bucket, buckets and their counts by day",
        (
            """CREATE TABLE IF NOT EXISTS {ks}.predictions_by_bucket (
                day date,
                bucket int,
                id timeuuid,
                created_at timestamp,
                model_version text,
                predicted_class int,
                label text,
                confidence double,
                top3 frozen<list<tuple<text, double>>>,
                source text,
                filename text,
                image_width int,
                image_height int,
                latency_ms double,
                client_hash text,
                true_label int,
                feedback_at timestamp,
                PRIMARY KEY ((day, bucket), id)
            ) WITH CLUSTERING ORDER BY (id DESC)
              AND compaction = """
            + _TWCS,
            """CREATE TABLE IF NOT EXISTS {ks}.buckets_by_day (
                day date,
                bucket int,
                written_at timestamp,
                counted_at timestamp,
                counts frozen<map<text, int>>,
                PRIMARY KEY ((day), bucket)
            ) WITH CLUSTERING ORDER BY (bucket DESC)
              AND compaction = """
            + _TWCS,
        ),
    ),
    (
        3,
        "rollout arm and shadow prediction",
        (
            "ALTER TABLE {ks}.predictions_by_bucket ADD IF NOT EXISTS "
            "(arm text, shadow_version text, shadow_class int, shadow_confidence double)",
        ),
    ),
)

LEGACY_TABLES = ("predictions_by_day", "feedback_by_id")
TTL_TABLES = (*LEGACY_TABLES, "predictions_by_bucket", "buckets_by_day")
REQUIRED_TABLES = ("predictions_by_bucket", "buckets_by_day")

# How long migrate waits for the local data center's nodes to hold its schema changes (the driver waits 10 s).
AGREEMENT_WAIT = 30.0
_LOCAL_VERSION = "SELECT schema_version FROM system.local"

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


def check_keyspace_name(name: str) -> str:
    """Keyspace names go into DDL text (CQL cannot bind them), so only plain identifiers pass."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"keyspace name {name!r} must be a letter then letters, digits or _ (max 48)")
    return name


def migrate(session: Session, keyspace: str, local_dc: str, replication: int, ttl_days: int) -> list[int]:
    """Create or update the schema; returns the migration versions applied now."""
    ks = check_keyspace_name(keyspace)
    if not _IDENTIFIER.match(local_dc.replace("-", "_")):
        raise ValueError(f"data center name {local_dc!r} is not valid")
    with _schema_changes(session, local_dc) as change:
        change(
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{{'class': 'NetworkTopologyStrategy', '{local_dc}': {int(replication)}}}"
        )
        change(
            f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations "
            "(version int PRIMARY KEY, description text, applied_at timestamp)"
        )
    _warn_on_replication_drift(session, ks, local_dc, replication)
    done = {row.version for row in session.execute(f"SELECT version FROM {ks}.schema_migrations")}
    pending = [
        (version, description, statements) for version, description, statements in MIGRATIONS if version not in done
    ]
    with _schema_changes(session, local_dc) as change:
        for _, _, statements in pending:
            for statement in statements:
                change(statement.replace("{ks}", ks))
        _apply_ttl(change, ks, int(ttl_days) * 86_400)
    record = session.prepare(f"INSERT INTO {ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, ?)")
    for version, description, _ in pending:
        session.execute(record, (version, description, datetime.now(UTC)))
        log.info("applied migration %d: %s", version, description)
    return [version for version, _, _ in pending]


@contextmanager
def _schema_changes(session: Session, local_dc: str) -> Iterator[Callable[[str], ResultSet]]:
    """Runs statements on one node of the local data center, then waits once until every node of
    it that is up reports that node's schema version (up to AGREEMENT_WAIT), and refreshes the
    driver's metadata.

    The driver would wait for agreement after each statement: about 0.5 s each on a 2-node
    cluster, most of a migration's time, since it compares the versions the nodes gossip. Each
    node's own ``system.local`` has its version as soon as it applies the change, and one node
    applies the statements in order, so none of them needs another's agreement first.
    """
    cluster = session.cluster
    host = next(iter(_up_nodes(session, local_dc)), None)
    if host is None:
        raise NoHostAvailable(f"no node of data center {local_dc} is up", {})
    wait, cluster.max_schema_agreement_wait = cluster.max_schema_agreement_wait, 0
    try:
        yield lambda statement: session.execute(statement, host=host)
    finally:
        cluster.max_schema_agreement_wait = wait
    _wait_for_agreement(session, local_dc)
    cluster.refresh_schema_metadata()


def _wait_for_agreement(session: Session, local_dc: str) -> None:
    """Until every node of ``local_dc`` that is up reports one schema version; warns at AGREEMENT_WAIT."""
    deadline = time.monotonic() + AGREEMENT_WAIT
    while True:
        versions: dict[str, object] = {}
        for host in _up_nodes(session, local_dc):
            try:
                versions[str(host.endpoint)] = session.execute(_LOCAL_VERSION, host=host).one().schema_version
            except (NoHostAvailable, OperationTimedOut) as exc:  # going down or reconnecting: ask again
                versions[str(host.endpoint)] = exc
        answered = not any(isinstance(version, Exception) for version in versions.values())
        if answered and len(set(versions.values())) <= 1:
            return
        if time.monotonic() >= deadline:
            log.warning("the nodes did not agree on the schema within %.0f s: %s", AGREEMENT_WAIT, versions)
            return
        time.sleep(0.1)


def _up_nodes(session: Session, local_dc: str) -> list[Host]:
    """The nodes of ``local_dc`` the driver sees up."""
    return [h for h in session.cluster.metadata.all_hosts() if h.is_up and h.datacenter == local_dc]


def _apply_ttl(change: Callable[[str], ResultSet], ks: str, ttl: int) -> None:
    """Set the default TTL only where it differs, so a re-run changes nothing (read on the node
    that made the tables, which has them before the others agree)."""
    rows = change(
        "SELECT table_name, default_time_to_live FROM system_schema.tables "
        f"WHERE keyspace_name = '{ks}'"  # ks passed check_keyspace_name
    )
    current = {row.table_name: row.default_time_to_live for row in rows}
    for table in TTL_TABLES:
        if table in current and current[table] != ttl:
            change(f"ALTER TABLE {ks}.{table} WITH default_time_to_live = {ttl}")
            log.info("%s.%s: default TTL %s s -> %s s", ks, table, current[table], ttl)


def applied_versions(session: Session, keyspace: str) -> list[int]:
    ks = check_keyspace_name(keyspace)
    return sorted(row.version for row in session.execute(f"SELECT version FROM {ks}.schema_migrations"))


def legacy_read_until(session: Session, keyspace: str, ttl_days: int) -> datetime | None:
    """Until when the tables of migration 1 may hold rows: migration 2's time plus the TTL; None
    when they hold none (a keyspace created by this version, or their rows have expired).

    Servers of the previous release keep writing those tables until a rolling update replaces
    them, so they are read beside the new ones rather than copied; callers ask again now and then.
    """
    ks = check_keyspace_name(keyspace)
    tables = session.cluster.metadata.keyspaces[ks].tables
    if not all(table in tables for table in LEGACY_TABLES):
        return None
    if not any(session.execute(f"SELECT id FROM {ks}.{table} LIMIT 1").one() for table in LEGACY_TABLES):
        return None
    row = session.execute(f"SELECT applied_at FROM {ks}.schema_migrations WHERE version = 2").one()
    if row is None:
        return None
    if int(ttl_days) == 0:  # rows are kept forever
        return datetime.max.replace(tzinfo=UTC)
    applied = row.applied_at if row.applied_at.tzinfo else row.applied_at.replace(tzinfo=UTC)
    return applied + timedelta(days=int(ttl_days) + 1)


def _warn_on_replication_drift(session: Session, ks: str, local_dc: str, replication: int) -> None:
    meta = session.cluster.metadata.keyspaces.get(ks)
    if meta is None:
        return
    options = getattr(meta.replication_strategy, "dc_replication_factors_info", None) or {}
    current = options.get(local_dc)
    current = getattr(current, "all_replicas", current)
    if current is not None and int(current) != int(replication):
        log.warning(
            "keyspace %s has replication %s in %s, settings ask for %s; change it with ALTER KEYSPACE "
            "and run a repair (migrate does not move data)",
            ks,
            current,
            local_dc,
            replication,
        )
