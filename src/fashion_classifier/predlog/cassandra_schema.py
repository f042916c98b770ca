"""Versioned, idempotent schema of the Cassandra prediction log (`fashion-classifier migrate`).

Tables follow the queries:

* ``predictions_by_day``: one partition per UTC day, rows clustered by the prediction id (a
  timeuuid) descending, so a day reads newest first and pages with the driver's paging state.
  The day is the one inside the timeuuid, so the same table also answers the lookup by id
  (``WHERE day = <day of id> AND id = ?``) without a second write per prediction.
* ``feedback_by_id``: the true label sent for a prediction, by id.
* Counts per class and day are computed from ``predictions_by_day`` (label column only) rather
  than kept in a counter table: counter updates are not idempotent, and a replayed spool or a
  retried timeout would count a prediction twice. Reading a day costs one partition scan.

Both tables expire rows after the default TTL (FC_CASSANDRA_TTL_DAYS) and use
TimeWindowCompactionStrategy with one-day windows: whole SSTables drop when their window expires.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from cassandra.cluster import Session

log = logging.getLogger(__name__)

_TWCS = (
    "{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}"
)

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
)

TTL_TABLES = ("predictions_by_day", "feedback_by_id")
REQUIRED_TABLES = TTL_TABLES

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
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', '{local_dc}': {int(replication)}}}"
    )
    _warn_on_replication_drift(session, ks, local_dc, replication)
    session.execute(
        f"CREATE TABLE IF NOT EXISTS {ks}.schema_migrations "
        "(version int PRIMARY KEY, description text, applied_at timestamp)"
    )
    done = {row.version for row in session.execute(f"SELECT version FROM {ks}.schema_migrations")}
    applied = []
    record = session.prepare(
        f"INSERT INTO {ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, ?)"
    )
    for version, description, statements in MIGRATIONS:
        if version in done:
            continue
        for statement in statements:
            session.execute(statement.replace("{ks}", ks))
        session.execute(record, (version, description, datetime.now(UTC)))
        applied.append(version)
        log.info("applied migration %d: %s", version, description)
    _apply_ttl(session, ks, int(ttl_days) * 86_400)
    return applied


def _apply_ttl(session: Session, ks: str, ttl: int) -> None:
    """Set the default TTL only where it differs, so a re-run changes nothing."""
    session.cluster.refresh_schema_metadata()
    tables = session.cluster.metadata.keyspaces[ks].tables
    for table in TTL_TABLES:
        current = tables[table].options.get("default_time_to_live") if table in tables else None
        if current != ttl:
            session.execute(f"ALTER TABLE {ks}.{table} WITH default_time_to_live = {ttl}")
            log.info("%s.%s: default TTL %s s -> %s s", ks, table, current, ttl)


def applied_versions(session: Session, keyspace: str) -> list[int]:
    ks = check_keyspace_name(keyspace)
    return sorted(row.version for row in session.execute(f"SELECT version FROM {ks}.schema_migrations"))


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
