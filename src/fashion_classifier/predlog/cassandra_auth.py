"""Roles of a Cassandra cluster with PasswordAuthenticator + CassandraAuthorizer (`migrate`).

Follows Cassandra's documented procedure for a new cluster: give ``system_auth`` a replication
that survives a node (NetworkTopologyStrategy, RF = min(3, nodes of the local data center)),
create a superuser of our own, log in as it, and take away the login and superuser status of the
well-known ``cassandra``/``cassandra`` (whose logins read at QUORUM: with 2 nodes, one down
blocks them). The classifier then uses an application role that may only SELECT and MODIFY the
prediction-log keyspace, so a leaked application password cannot drop or alter anything.

Every step is idempotent: `migrate` runs it on each install and upgrade. The first run logs in as
``cassandra``/``cassandra`` (:data:`DEFAULT_SUPERUSER`) because the admin role does not exist
yet; later runs log in as the admin role. Passwords come from Secrets and are never logged.

Logins of roles other than ``cassandra`` read ``system_auth`` at ``auth_read_consistency_level``,
which the chart, the kustomize base and scripts/cassandra-local set to LOCAL_ONE (5.0's default,
LOCAL_QUORUM, would refuse every new connection with RF 2 and one node down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import SimpleStatement

log = logging.getLogger(__name__)

MAX_AUTH_REPLICATION = 3


@dataclass(frozen=True)
class Role:
    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.name or not self.password:
            raise ValueError("a role needs a name and a password")


DEFAULT_SUPERUSER = Role("cassandra", "cassandra")


def quote_name(name: str) -> str:
    """A role name as a CQL identifier (role names cannot be bound)."""
    return '"' + name.replace('"', '""') + '"'


def quote_text(text: str) -> str:
    """A password as a CQL string literal (role options cannot be bound either)."""
    return "'" + text.replace("'", "''") + "'"


def authentication_enabled(session: Session) -> bool:
    """False when the nodes answering run AllowAllAuthenticator (``system_views.settings``).

    That is the cluster of a release installed with authentication off, during the pre-upgrade
    migration of the upgrade that switches it on (the nodes restart with PasswordAuthenticator
    after it): roles cannot be created there. Unknown (no virtual table) counts as enabled.
    """
    try:
        rows = list(session.execute("SELECT value FROM system_views.settings WHERE name = 'authenticator'"))
    except Exception:  # noqa: BLE001 - an older or different server: try the roles anyway
        return True
    return not (rows and "AllowAllAuthenticator" in str(rows[0].value))


def auth_replication(session: Session, local_dc: str) -> int:
    """min(3, nodes known in the local data center, down ones included)."""
    nodes = [h for h in session.cluster.metadata.all_hosts() if h.datacenter == local_dc]
    return max(1, min(MAX_AUTH_REPLICATION, len(nodes)))


def ensure_auth_replication(session: Session, local_dc: str) -> int:
    """``system_auth`` with NetworkTopologyStrategy and RF min(3, nodes); returns the RF.

    When the replication changes, every system_auth table is read at ALL, which makes the
    blocking read repair copy the existing roles to their new replicas (what `nodetool repair
    system_auth` would do, without JMX); otherwise a login that reads a new replica at LOCAL_ONE
    could find no role.
    """
    rf = auth_replication(session, local_dc)
    meta = session.cluster.metadata.keyspaces.get("system_auth")
    strategy = type(meta.replication_strategy).__name__ if meta else ""
    options = (getattr(meta.replication_strategy, "dc_replication_factors_info", None) if meta else None) or {}
    have = options.get(local_dc)
    have = getattr(have, "all_replicas", have)
    if strategy == "NetworkTopologyStrategy" and have is not None and int(have) == rf:
        return rf
    session.execute(
        "ALTER KEYSPACE system_auth WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', {quote_text(local_dc)}: {rf}}}"
    )
    log.info("system_auth: replication NetworkTopologyStrategy %s: %d (was %s %s)", local_dc, rf, strategy, have)
    repair_auth_tables(session)
    return rf


def repair_auth_tables(session: Session) -> None:
    """Read every system_auth table at ALL: blocking read repair brings each replica up to date."""
    session.cluster.refresh_schema_metadata()
    tables = sorted(session.cluster.metadata.keyspaces["system_auth"].tables)
    for table in tables:
        statement = SimpleStatement(
            f"SELECT * FROM system_auth.{table}", consistency_level=ConsistencyLevel.ALL, fetch_size=1000
        )
        for _row in session.execute(statement, timeout=60):
            pass


def _role(session: Session, name: str):
    """The role's row (is_superuser, can_login), or None. Read at LOCAL_ONE like a login, so that a
    re-run (every `helm upgrade`) works with a node down: it then only reads, and writes nothing
    (role and permission changes are written at EACH_QUORUM, which needs every replica)."""
    statement = SimpleStatement(
        "SELECT is_superuser, can_login FROM system_auth.roles WHERE role = %s",
        consistency_level=ConsistencyLevel.LOCAL_ONE,
    )
    rows = list(session.execute(statement, (name,)))
    return rows[0] if rows else None


def _ensure_role(session: Session, role: Role, superuser: bool, password_ok: Callable[[Role], bool]) -> str:
    """Create ``role``, or bring an existing one to the wanted status and password.

    The password is only set when it differs (``password_ok`` tries a login): Cassandra 5.0
    refuses a second password change of a role within 5 s, and an unchanged password need not
    be rewritten on every run. Returns "created", "updated" or "unchanged".
    """
    status = f"SUPERUSER = {str(superuser).lower()} AND LOGIN = true"
    name = quote_name(role.name)
    row = _role(session, role.name)
    if row is None:
        session.execute(f"CREATE ROLE IF NOT EXISTS {name} WITH PASSWORD = {quote_text(role.password)} AND {status}")
        return "created"
    outcome = "unchanged"
    if (bool(row.is_superuser), bool(row.can_login)) != (superuser, True):
        session.execute(f"ALTER ROLE {name} WITH {status}")
        outcome = "updated"
    if not password_ok(role):
        session.execute(f"ALTER ROLE {name} WITH PASSWORD = {quote_text(role.password)}")
        outcome = "updated"
    return outcome


def ensure_superuser(session: Session, admin: Role, password_ok: Callable[[Role], bool]) -> str:
    """Create the admin superuser, or reset its password and status to the Secret's."""
    if admin.name == DEFAULT_SUPERUSER.name:
        raise ValueError("the admin role must not be the default superuser 'cassandra'")
    return _ensure_role(session, admin, True, password_ok)


def disable_default_superuser(session: Session) -> bool:
    """``cassandra`` loses LOGIN and SUPERUSER (as Cassandra's documentation advises; dropping it
    would let a node that missed the change recreate it). Returns True when it changed anything."""
    row = _role(session, DEFAULT_SUPERUSER.name)
    if row is None or not (row.is_superuser or row.can_login):
        return False
    session.execute(f"ALTER ROLE {quote_name(DEFAULT_SUPERUSER.name)} WITH SUPERUSER = false AND LOGIN = false")
    log.info("default superuser 'cassandra' disabled (LOGIN = false, SUPERUSER = false)")
    return True


APP_PERMISSIONS = ("SELECT", "MODIFY")


def ensure_app_role(session: Session, keyspace: str, app: Role, password_ok: Callable[[Role], bool]) -> str:
    """The application role: LOGIN, not a superuser, SELECT and MODIFY on ``keyspace`` only."""
    if app.name == DEFAULT_SUPERUSER.name:
        raise ValueError("the application role must not be the default superuser 'cassandra'")
    outcome = _ensure_role(session, app, False, password_ok)
    resource = f"<keyspace {keyspace}>"
    granted = {
        row.permission
        for row in session.execute(f"LIST ALL PERMISSIONS OF {quote_name(app.name)} NORECURSIVE")
        if row.resource == resource
    }
    for permission in APP_PERMISSIONS:
        if permission not in granted:
            session.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO {quote_name(app.name)}")
            outcome = "updated" if outcome == "unchanged" else outcome
    log.info("role %s (%s): %s on keyspace %s", app.name, outcome, " and ".join(APP_PERMISSIONS), keyspace)
    return outcome
