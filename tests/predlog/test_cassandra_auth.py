"""Cassandra with authentication: a second local 2-node cluster started with PasswordAuthenticator
and CassandraAuthorizer (scripts/cassandra-local, FC_CASSANDRA_AUTH=1) on 127.0.0.3-4, set up by
`fashion-classifier migrate` exactly as the chart's and the kustomize base's migration Job does.

The module starts that cluster fresh (~25 s) and stops it at the end; it runs beside the session's
unauthenticated cluster on 127.0.0.1-2. Tests run in file order: the last one kills node 2.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cassandra import AuthenticationFailed, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import DCAwareRoundRobinPolicy

from fashion_classifier.cli import main
from fashion_classifier.predlog import cassandra_sink
from fashion_classifier.predlog.cassandra_log import CassandraLog

from .conftest import SCRIPT, cassandra_settings, eventually, make_record

pytestmark = pytest.mark.cassandra

AUTH_HOSTS = ("127.0.0.3", "127.0.0.4")
KEYSPACE = "fashion_auth"
ADMIN = ("fc_admin", "admin-Pw-1'quote")  # a quote in a password must survive the CQL quoting
APP = ("fc_app", "app-Pw-2")
WORK = Path(os.environ.get("FC_CASSANDRA_WORK", Path.home() / ".cache" / "fashion-classifier" / "cassandra"))
SCRIPT_ENV = {"FC_CASSANDRA_AUTH": "1", "FC_CASSANDRA_IP_OFFSET": "2", "FC_CASSANDRA_DATA": str(WORK / "data-auth")}


def _script(*args: str, timeout: float = 400) -> str:
    env = {**os.environ, **SCRIPT_ENV}
    env.pop("FC_CASSANDRA_USERNAME", None)
    env.pop("FC_CASSANDRA_PASSWORD", None)
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail(f"scripts/cassandra-local {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def _session(user: str, password: str, hosts=AUTH_HOSTS):
    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy("datacenter1"), request_timeout=30)
    cluster = Cluster(
        list(hosts),
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=PlainTextAuthProvider(user, password),
    )
    return cluster, cluster.connect()


def _migrate(monkeypatch_env: dict[str, str], capsys, wait: float = 120) -> tuple[int, str, str]:
    env = {
        "FC_PREDLOG": "cassandra",
        "FC_CASSANDRA_HOSTS": ",".join(AUTH_HOSTS),
        "FC_CASSANDRA_KEYSPACE": KEYSPACE,
        "FC_CASSANDRA_USERNAME": ADMIN[0],
        "FC_CASSANDRA_PASSWORD": ADMIN[1],
        "FC_CASSANDRA_APP_USERNAME": APP[0],
        "FC_CASSANDRA_APP_PASSWORD": APP[1],
        **monkeypatch_env,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        code = main(["migrate", "--wait", str(wait)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def auth_cluster() -> Iterator[None]:
    t0 = time.monotonic()
    _script("clean")
    print(_script("start", "--fresh").strip(), f"(auth cluster start {time.monotonic() - t0:.1f} s)")
    yield
    _script("clean")


def app_settings(tmp_path, **changes):
    return cassandra_settings(
        KEYSPACE,
        tmp_path / "spool",
        **{"cassandra_hosts": AUTH_HOSTS, "cassandra_username": APP[0], "cassandra_password": APP[1], **changes},
    )


def _connected(lg: CassandraLog, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not lg.connected:
        assert time.monotonic() < deadline, "the log did not connect to the auth cluster"
        time.sleep(0.1)


# --- bootstrap ---------------------------------------------------------------------------------


def test_migrate_replaces_the_default_superuser(auth_cluster, capsys):
    # A fresh cluster has only cassandra/cassandra.
    cluster, session = _session("cassandra", "cassandra")
    assert [r.role for r in session.execute("SELECT role FROM system_auth.roles")] == ["cassandra"]
    cluster.shutdown()

    t0 = time.monotonic()
    code, out, err = _migrate({}, capsys)
    print(f"first migrate (bootstrap) {time.monotonic() - t0:.1f} s")
    assert code == 0, err
    assert "created superuser role fc_admin" in out
    assert "default superuser cassandra disabled" in out
    assert "role fc_app (created)" in out
    assert ADMIN[1] not in out + err and APP[1] not in out + err

    cluster, session = _session(*ADMIN)
    try:
        roles = {r.role: r for r in session.execute("SELECT role, is_superuser, can_login FROM system_auth.roles")}
        assert set(roles) == {"cassandra", "fc_admin", "fc_app"}
        assert (roles["cassandra"].is_superuser, roles["cassandra"].can_login) == (False, False)
        assert (roles["fc_admin"].is_superuser, roles["fc_admin"].can_login) == (True, True)
        assert (roles["fc_app"].is_superuser, roles["fc_app"].can_login) == (False, True)
        session.cluster.refresh_schema_metadata()
        strategy = session.cluster.metadata.keyspaces["system_auth"].replication_strategy
        assert type(strategy).__name__ == "NetworkTopologyStrategy"
        assert str(strategy.dc_replication_factors_info["datacenter1"]) == "2"  # min(3, 2 nodes)
        perms = {(r.resource, r.permission) for r in session.execute("LIST ALL PERMISSIONS OF fc_app")}
        assert perms == {(f"<keyspace {KEYSPACE}>", "SELECT"), (f"<keyspace {KEYSPACE}>", "MODIFY")}
    finally:
        cluster.shutdown()

    with pytest.raises(NoHostAvailable) as refused:
        _session("cassandra", "cassandra")
    assert any(isinstance(e, AuthenticationFailed) for e in refused.value.errors.values())


def test_migrate_again_changes_nothing(auth_cluster, capsys):
    code, out, err = _migrate({}, capsys)
    assert code == 0, err
    assert "created superuser" not in out and "disabled" not in out
    assert "role fc_app (unchanged)" in out and "schema up to date" in out


def test_wrong_admin_password_is_one_clear_error(auth_cluster, capsys):
    code, out, err = _migrate({"FC_CASSANDRA_PASSWORD": "not-it"}, capsys)
    assert code == 3
    assert "refused role 'fc_admin' and the default superuser" in err
    assert len(err.strip().splitlines()) == 1 and "not-it" not in err


# --- the application role ------------------------------------------------------------------------


def test_app_role_writes_and_reads(auth_cluster, tmp_path):
    lg = CassandraLog(app_settings(tmp_path))
    try:
        _connected(lg)
        recs = [make_record(i) for i in range(20)]
        for rec in recs:
            lg.record(rec)
        assert lg.flush(30)
        assert not list((tmp_path / "spool").glob("*.ndjson")) or all(
            p.stat().st_size == 0 for p in (tmp_path / "spool").glob("*.ndjson")
        )
        got = eventually(lambda: lg.get(recs[3].id))
        assert got is not None and got.label == recs[3].label
        lg.add_feedback(recs[3].id, 4)
        assert lg.flush(30)
        assert eventually(lambda: (lg.get(recs[3].id) or recs[3]).true_label == 4)
        day = recs[0].created_at.astimezone(UTC).date()
        assert eventually(lambda: sum(lg.counts(day).values()) >= 20)
    finally:
        lg.close()


@pytest.mark.parametrize(
    "statement",
    [
        f"DROP TABLE {KEYSPACE}.predictions_by_day",
        f"DROP KEYSPACE {KEYSPACE}",
        f"CREATE TABLE {KEYSPACE}.intruder (id int PRIMARY KEY)",
        "CREATE KEYSPACE intruder WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 1}",
        f"ALTER TABLE {KEYSPACE}.predictions_by_day WITH default_time_to_live = 1",
        "CREATE ROLE intruder WITH PASSWORD = 'x' AND LOGIN = true",
        f"GRANT ALL PERMISSIONS ON KEYSPACE {KEYSPACE} TO fc_app",
        f"SELECT version FROM {KEYSPACE}.schema_migrations",  # SELECT is on the keyspace: allowed
    ],
    ids=lambda s: s.split(" (")[0][:40],
)
def test_app_role_cannot_change_the_schema_or_roles(auth_cluster, statement):
    """DDL, roles and grants are refused. (MODIFY covers INSERT, UPDATE, DELETE and TRUNCATE: Cassandra
    has no finer permission, so the application role can empty a table but not drop or alter it.)"""
    cluster, session = _session(*APP)
    try:
        if statement.startswith("SELECT"):
            assert list(session.execute(statement))
            return
        with pytest.raises(Unauthorized):
            session.execute(statement)
    finally:
        cluster.shutdown()


def test_wrong_password_is_one_log_line_and_rows_wait_in_the_spool(auth_cluster, tmp_path, caplog, monkeypatch):
    attempts = []
    real_build = cassandra_sink.build_cluster

    def counting_build(settings):
        attempts.append(time.monotonic())
        return real_build(settings)

    monkeypatch.setattr(cassandra_sink, "build_cluster", counting_build)
    caplog.set_level(logging.INFO)
    recs = [make_record(i) for i in range(25)]
    lg = CassandraLog(app_settings(tmp_path, cassandra_password="wrong-password"))
    try:
        for rec in recs:
            lg.record(rec)
        assert lg.flush(30)  # nothing connected: flushed means spooled
        eventually(lambda: len(attempts) >= 4, timeout=60)  # refused again and again
    finally:
        lg.close()
    # Every logger: the driver's own "Control connection failed" ERROR per attempt is dropped too.
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert lines[0].levelno == logging.ERROR
    assert "refused the login of role 'fc_app'" in message and "spool" in message
    assert "wrong-password" not in caplog.text
    spooled = sum(p.stat().st_size for p in (tmp_path / "spool").glob("*"))
    assert spooled > 0

    # Not lost: with the right password the same spool is replayed into the cluster.
    monkeypatch.setattr(cassandra_sink, "build_cluster", real_build)
    lg = CassandraLog(app_settings(tmp_path))
    try:
        _connected(lg)
        assert eventually(lambda: all(lg.get(rec.id) is not None for rec in recs), timeout=60)
    finally:
        lg.close()


# --- a cluster another tool manages (the chart's externalCassandra, e.g. K8ssandra) ----------------


def test_migrate_leaves_a_managed_clusters_auth_alone(auth_cluster, capsys, tmp_path):
    """FC_CASSANDRA_MANAGE_AUTH=false: logged in as the operator's superuser, migrate creates the
    keyspace and the application role only: system_auth's replication and the default superuser
    stay as the operator set them."""
    operator, ext_app, keyspace = ("ops_superuser", "ops-Pw-3"), ("ext_app", "ext-Pw-4"), "fashion_ext"
    cluster, session = _session(*ADMIN)
    try:
        session.execute(
            f"CREATE ROLE IF NOT EXISTS {operator[0]} WITH SUPERUSER = true AND LOGIN = true "
            f"AND PASSWORD = '{operator[1]}'"
        )
        session.execute("ALTER ROLE cassandra WITH LOGIN = true")
        session.execute(
            "ALTER KEYSPACE system_auth WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 1}"
        )
        code, out, err = _migrate(
            {
                "FC_CASSANDRA_MANAGE_AUTH": "false",
                "FC_CASSANDRA_USERNAME": operator[0],
                "FC_CASSANDRA_PASSWORD": operator[1],
                "FC_CASSANDRA_APP_USERNAME": ext_app[0],
                "FC_CASSANDRA_APP_PASSWORD": ext_app[1],
                "FC_CASSANDRA_KEYSPACE": keyspace,
            },
            capsys,
        )
        assert code == 0, err
        assert f"role {ext_app[0]} (created)" in out and "disabled" not in out
        session.cluster.refresh_schema_metadata()
        strategy = session.cluster.metadata.keyspaces["system_auth"].replication_strategy
        assert str(strategy.dc_replication_factors_info["datacenter1"]) == "1"
        cassandra = session.execute("SELECT can_login FROM system_auth.roles WHERE role = 'cassandra'").one()
        assert cassandra.can_login is True
        lg = CassandraLog(
            cassandra_settings(
                keyspace,
                tmp_path / "spool",
                cassandra_hosts=AUTH_HOSTS,
                cassandra_username=ext_app[0],
                cassandra_password=ext_app[1],
            )
        )
        try:
            _connected(lg)
            rec = make_record(1, created_at=datetime.now(UTC))
            lg.record(rec)
            assert lg.flush(30)
            assert eventually(lambda: lg.get(rec.id) is not None, timeout=30)
        finally:
            lg.close()
        # A refused login is retried until --wait (an operator may not have made its superuser yet),
        # then an error; it never falls back to cassandra/cassandra.
        code, _, err = _migrate(
            {
                "FC_CASSANDRA_MANAGE_AUTH": "false",
                "FC_CASSANDRA_USERNAME": operator[0],
                "FC_CASSANDRA_PASSWORD": "wrong",
                "FC_CASSANDRA_KEYSPACE": keyspace,
            },
            capsys,
            wait=5,
        )
        assert code == 3 and "Cassandra refused the role 'ops_superuser'" in err.splitlines()[-1]
        assert "created superuser" not in err
    finally:
        # Back to what the tests below expect (their migrate would restore it too).
        session.execute("ALTER ROLE cassandra WITH LOGIN = false")
        session.execute(
            "ALTER KEYSPACE system_auth WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 2}"
        )
        cluster.shutdown()


def test_new_app_connection_logs_in_and_writes_with_node_2_killed(auth_cluster, tmp_path):
    _script("kill", "2")
    # No cached login on node 1: the role and its password are read from system_auth now.
    for cache in ("invalidatecredentialscache", "invalidaterolescache", "invalidatepermissionscache"):
        _script("nodetool", cache, timeout=120)
    t0 = time.monotonic()
    lg = CassandraLog(app_settings(tmp_path))
    try:
        _connected(lg)
        print(f"app login with node 2 down in {time.monotonic() - t0:.1f} s")
        recs = [make_record(i, created_at=datetime.now(UTC)) for i in range(10)]
        for rec in recs:
            lg.record(rec)
        assert lg.flush(30)
        spool = list((tmp_path / "spool").glob("*.ndjson"))
        assert all(p.stat().st_size == 0 for p in spool), "rows were spooled, not written"
        assert eventually(lambda: all(lg.get(rec.id) is not None for rec in recs), timeout=30)
    finally:
        lg.close()


def test_migrate_again_with_node_2_killed(auth_cluster, capsys):
    # `helm upgrade` runs the migration Job while a node may be down: a re-run only reads (roles,
    # permissions, system_auth replication), since role changes need every replica.
    code, out, err = _migrate({}, capsys)
    assert code == 0, err
    assert "role fc_app (unchanged)" in out and "schema up to date" in out


def test_migrate_on_a_cluster_without_authentication_skips_the_roles(admin_session, capsys):
    # The pre-upgrade migration of the upgrade that switches authentication on runs while the
    # nodes still run AllowAllAuthenticator (the session's cluster on 127.0.0.1-2): it must not
    # fail (which would block the upgrade), and says that the roles wait.
    keyspace = "t_auth_skipped"
    try:
        code, out, err = _migrate(
            {"FC_CASSANDRA_HOSTS": "127.0.0.1,127.0.0.2", "FC_CASSANDRA_KEYSPACE": keyspace}, capsys
        )
        assert code == 0, err
        assert "runs without authentication (AllowAllAuthenticator): roles not set up" in err
        assert "applied migration(s) 1" in out and "role" not in out
    finally:
        admin_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
