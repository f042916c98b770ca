"""Prediction-log commands: migrate (schema) and history (recent rows as a table)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from fashion_classifier.cli import EXIT_UNAVAILABLE, EXIT_USAGE, CliError, argtypes
from fashion_classifier.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="create or update the prediction-log schema (idempotent)",
        description="Apply the versioned prediction-log schema to the configured backend "
        "(FC_PREDLOG): the Cassandra keyspace and tables, or the SQLite file.",
    )
    p.add_argument(
        "--wait",
        type=argtypes.seconds(),
        default=60.0,
        help="seconds to keep trying while Cassandra is not reachable yet or a schema change fails "
        "on a transient error (default: 60)",
    )
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser(
        "history",
        help="print recent predictions as a table",
        description="Print the newest logged predictions (or one UTC day's) from the configured backend.",
    )
    p.add_argument("--day", type=argtypes.day, help="one UTC day, YYYY-MM-DD (default: the newest rows of any day)")
    p.add_argument("--limit", type=argtypes.whole_number(1, 10_000), default=20, help="rows to print (default: 20)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument(
        "--wait", type=argtypes.seconds(), default=10.0, help="seconds to wait for Cassandra to connect (default: 10)"
    )
    p.set_defaults(handler=cmd_history)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.predlog == "off":
        raise CliError("FC_PREDLOG=off: there is no prediction-log schema to migrate", EXIT_USAGE)
    if settings.predlog == "sqlite":
        from fashion_classifier.predlog.sqlite_log import SqliteLog

        applied = SqliteLog(settings.sqlite_path, settings.spool_dir).migrate()
        target = f"sqlite {settings.sqlite_path}"
    else:
        applied, target = _migrate_cassandra(settings, args.wait)
    if applied:
        print(f"{target}: applied migration(s) {', '.join(map(str, applied))}")
    else:
        print(f"{target}: schema up to date")
    return 0


class _Refused(Exception):
    """The cluster refused the credentials (not a reachability problem)."""


def _connect(settings: Settings, deadline: float, wait: float):
    """(cluster, session) once a node answers; _Refused on bad credentials; CliError at the deadline."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    from fashion_classifier.predlog import cassandra_session

    hosts = ",".join(settings.cassandra_hosts)
    while True:
        cluster = cassandra_session.build_cluster(settings)
        try:
            with cassandra_session.quiet_connect_errors():  # the cause is reported below
                return cluster, cluster.connect()
        except NoHostAvailable as exc:
            cluster.shutdown()
            if _auth_failed(exc, AuthenticationFailed):
                raise _Refused() from None
            if time.monotonic() >= deadline:
                raise CliError(
                    f"Cassandra at {hosts}:{settings.cassandra_port} not reachable after {wait:g} s",
                    EXIT_UNAVAILABLE,
                ) from None
            time.sleep(2)


def _retrying(what: str, hosts: str, deadline: float, step):
    """``step()``, run again on a driver error until the deadline (every step is idempotent)."""
    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable

    while True:
        try:
            return step()
        except (DriverException, NoHostAvailable) as exc:
            # The usual failure is transient: a node restarted a moment ago is sent a statement
            # on a keyspace it has not received yet ("keyspace ... does not exist").
            if time.monotonic() >= deadline:
                raise CliError(f"{what} on Cassandra at {hosts} failed: {exc}", EXIT_UNAVAILABLE) from None
            print(f"{what} failed, retrying: {exc}", file=sys.stderr)
            time.sleep(1)


def _bootstrap_admin(settings: Settings, admin, deadline: float, wait: float) -> None:
    """First run on a cluster with authentication: log in as cassandra/cassandra and create the
    admin superuser (cassandra_auth); the caller then logs in as it and disables cassandra."""
    import dataclasses

    from fashion_classifier.predlog import cassandra_auth

    hosts = ",".join(settings.cassandra_hosts)
    default = cassandra_auth.DEFAULT_SUPERUSER
    boot = dataclasses.replace(settings, cassandra_username=default.name, cassandra_password=default.password)
    try:
        cluster, session = _connect(boot, deadline, wait)
    except _Refused:
        raise CliError(
            f"Cassandra at {hosts} refused role {admin.name!r} and the default superuser: the admin "
            "password in FC_CASSANDRA_PASSWORD is not the one the cluster has (was its Secret replaced?)",
            EXIT_UNAVAILABLE,
        ) from None
    try:

        def step() -> None:
            cassandra_auth.ensure_auth_replication(session, settings.cassandra_local_dc)
            # The admin's login was just refused: its password is not the Secret's.
            cassandra_auth.ensure_superuser(session, admin, lambda role: False)

        _retrying("creating the admin role", hosts, deadline, step)
    finally:
        cluster.shutdown()
    print(f"created superuser role {admin.name} (logged in as the default superuser cassandra)")


def _migrate_cassandra(settings: Settings, wait: float) -> tuple[list[int], str]:
    from fashion_classifier.predlog import cassandra_auth, cassandra_schema

    try:
        cassandra_schema.check_keyspace_name(settings.cassandra_keyspace)
    except ValueError as exc:
        raise CliError(f"FC_CASSANDRA_KEYSPACE: {exc}") from None
    try:
        admin = app = None
        if settings.cassandra_username and settings.cassandra_app_username:
            # Role management: this process is the admin and creates the application role.
            admin = cassandra_auth.Role(settings.cassandra_username, settings.cassandra_password)
            app = cassandra_auth.Role(settings.cassandra_app_username, settings.cassandra_app_password)
            # The default superuser is disabled once the admin role exists, unless another tool
            # manages the cluster's roles: then it may be the admin.
            reserved = {app.name, admin.name} if settings.cassandra_manage_auth else {app.name}
            if cassandra_auth.DEFAULT_SUPERUSER.name in reserved:
                raise ValueError("the application role (and, unless FC_CASSANDRA_MANAGE_AUTH is false, the admin "
                                 "role) may not be named 'cassandra'")
    except ValueError as exc:
        raise CliError(f"FC_CASSANDRA_USERNAME / FC_CASSANDRA_APP_USERNAME: {exc}") from None
    hosts = ",".join(settings.cassandra_hosts)
    deadline = time.monotonic() + wait
    try:
        cluster, session = _connect(settings, deadline, wait)
    except _Refused:
        if admin is None:
            raise CliError(f"Cassandra at {hosts} refused the credentials", EXIT_UNAVAILABLE) from None
        # An operator makes its superuser once its nodes are up: keep trying until the deadline.
        # Otherwise this is a new cluster: create the admin role first.
        what = f"logging in as {admin.name!r}"
        if settings.cassandra_manage_auth:
            _bootstrap_admin(settings, admin, deadline, wait)
            what = "logging in as the new admin role"
        cluster, session = _retrying(what, hosts, deadline, lambda: _connect_or_raise(settings, deadline, wait))

    manage_roles = admin is not None and cassandra_auth.authentication_enabled(session)
    if admin is not None and not manage_roles:
        print(
            f"Cassandra at {hosts} runs without authentication (AllowAllAuthenticator): roles not set up; "
            "run the migration again once its nodes run PasswordAuthenticator",
            file=sys.stderr,
        )

    def step() -> list[int]:
        if manage_roles and settings.cassandra_manage_auth:
            cassandra_auth.ensure_auth_replication(session, settings.cassandra_local_dc)
            if cassandra_auth.disable_default_superuser(session):
                print("default superuser cassandra disabled (LOGIN = false, SUPERUSER = false)")
        applied = cassandra_schema.migrate(
            session,
            settings.cassandra_keyspace,
            settings.cassandra_local_dc,
            settings.cassandra_replication,
            settings.cassandra_ttl_days,
        )
        if manage_roles and app is not None:
            outcome = cassandra_auth.ensure_app_role(
                session, settings.cassandra_keyspace, app, lambda role: _can_login(settings, role)
            )
            print(f"role {app.name} ({outcome}): SELECT and MODIFY on keyspace {settings.cassandra_keyspace}")
        return applied

    try:
        applied = _retrying("schema migration", hosts, deadline, step)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        cluster.shutdown()
    return applied, f"cassandra {hosts} keyspace {settings.cassandra_keyspace}"


def _can_login(settings: Settings, role) -> bool:
    """Whether ``role`` logs in with its password (a short connection of its own)."""
    import dataclasses

    from fashion_classifier.predlog import cassandra_session

    probe = dataclasses.replace(settings, cassandra_username=role.name, cassandra_password=role.password)
    cluster = cassandra_session.build_cluster(probe)
    try:
        with cassandra_session.quiet_connect_errors():
            cluster.connect()
        return True
    except Exception as exc:  # noqa: BLE001 - any refusal means: set the password
        from cassandra import AuthenticationFailed

        errors = getattr(exc, "errors", {}) or {}
        if any(isinstance(err, AuthenticationFailed) for err in errors.values()):
            return False
        raise
    finally:
        cluster.shutdown()


def _connect_or_raise(settings: Settings, deadline: float, wait: float):
    """_connect, with a refusal turned into a driver error that _retrying retries: a role created
    a moment ago may not have reached the node that answers the login yet."""
    from cassandra import DriverException

    try:
        return _connect(settings, deadline, wait)
    except _Refused:
        raise DriverException(f"Cassandra refused the role {settings.cassandra_username!r} (yet)") from None


def _auth_failed(exc: Exception, auth_error: type) -> bool:
    errors = getattr(exc, "errors", {}) or {}
    return any(isinstance(err, auth_error) for err in errors.values())


def cmd_history(args: argparse.Namespace) -> int:
    from fashion_classifier.predlog import InvalidPageState, PredictionLogUnavailable, open_log, when_available

    settings = Settings.from_env()
    if settings.predlog == "off":
        raise CliError("FC_PREDLOG=off: predictions are not logged", EXIT_USAGE)
    log = open_log(settings)
    try:
        rows = when_available(
            lambda: log.list_day(args.day, args.limit).rows if args.day else log.recent(args.limit), args.wait)
    except PredictionLogUnavailable as exc:
        raise CliError(f"prediction log unavailable: {exc}", EXIT_UNAVAILABLE) from None
    except InvalidPageState as exc:  # not expected without a token, but never a traceback
        raise CliError(str(exc)) from None
    finally:
        log.close()
    if args.json:
        from fashion_classifier.predlog.codec import record_to_dict

        for rec in rows:
            print(json.dumps(record_to_dict(rec), ensure_ascii=False))
        return 0
    if not rows:
        print("no predictions logged" + (f" on {args.day}" if args.day else ""))
        return 0
    print(format_table(rows))
    return 0


def _printable(text: str | None, width: int) -> str:
    """Client text made safe for a terminal: control characters escaped, long values cut."""
    if text is None:
        return "-"
    safe = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return safe if len(safe) <= width else safe[: width - 1] + "…"


def format_table(rows) -> str:
    from fashion_classifier.config import CLASS_NAMES

    header = ("time (UTC)", "id", "label", "conf", "model", "source", "feedback", "filename")
    body = []
    for rec in rows:
        feedback = "-"
        if rec.true_label is not None:
            known = 0 <= rec.true_label < len(CLASS_NAMES)
            name = CLASS_NAMES[rec.true_label] if known else str(rec.true_label)
            feedback = ("ok " if rec.true_label == rec.predicted_class else "no ") + name
        body.append(
            (
                rec.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                str(rec.id),
                _printable(rec.label, 12),
                f"{rec.confidence:.3f}",
                _printable(rec.model_version, 24),
                _printable(rec.source, 8),
                feedback,
                _printable(rec.filename, 40),
            )
        )
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
