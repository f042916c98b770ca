"""`fashion-classifier migrate` on Cassandra: connect, set up roles, apply the schema.

It waits for a node to answer (up to ``wait`` seconds), retries every step on a driver error
(each is idempotent), and with role management (``cassandra_auth``) creates the admin role on a
new cluster, disables the default superuser and sets up the application role. Progress goes to
``say``, retries and warnings to ``warn``; a failure is one :class:`MigrationFailed`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TypeVar

from cassandra import AuthenticationFailed, DriverException
from cassandra.cluster import NoHostAvailable

from fashion_classifier.config import Settings
from fashion_classifier.predlog import cassandra_auth, cassandra_schema, cassandra_session
from fashion_classifier.predlog.base import MigrationFailed

T = TypeVar("T")


class _Refused(Exception):
    """The cluster refused the credentials (not a reachability problem)."""


def migrate(
    settings: Settings, wait: float, say: Callable[[str], None], warn: Callable[[str], None]
) -> tuple[list[int], str]:
    """(migration versions applied now, a description of the target)."""
    return _Migration(settings, wait, say, warn).run()


class _Migration:
    def __init__(
        self, settings: Settings, wait: float, say: Callable[[str], None], warn: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self.wait = wait
        self.say = say
        self.warn = warn
        self.hosts = ",".join(settings.cassandra_hosts)
        self.deadline = 0.0

    def run(self) -> tuple[list[int], str]:
        settings, hosts = self.settings, self.hosts
        try:
            cassandra_schema.check_keyspace_name(settings.cassandra_keyspace)
        except ValueError as exc:
            raise MigrationFailed(f"FC_CASSANDRA_KEYSPACE: {exc}") from None
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
                    raise ValueError(
                        "the application role (and, unless FC_CASSANDRA_MANAGE_AUTH is false, the "
                        "admin role) may not be named 'cassandra'"
                    )
        except ValueError as exc:
            raise MigrationFailed(f"FC_CASSANDRA_USERNAME / FC_CASSANDRA_APP_USERNAME: {exc}") from None
        self.deadline = time.monotonic() + self.wait
        try:
            cluster, session = self._connect(settings)
        except _Refused:
            if admin is None:
                raise MigrationFailed(f"Cassandra at {hosts} refused the credentials", unavailable=True) from None
            # An operator makes its superuser once its nodes are up: keep trying until the deadline.
            # Otherwise this is a new cluster: create the admin role first.
            what = f"logging in as {admin.name!r}"
            if settings.cassandra_manage_auth:
                self._bootstrap_admin(admin)
                what = "logging in as the new admin role"
            cluster, session = self._retrying(what, lambda: self._connect_or_raise(settings))

        manage_roles = admin is not None and cassandra_auth.authentication_enabled(session)
        if admin is not None and not manage_roles:
            self.warn(
                f"Cassandra at {hosts} runs without authentication (AllowAllAuthenticator): roles not set up; "
                "run the migration again once its nodes run PasswordAuthenticator"
            )

        def step() -> list[int]:
            if manage_roles and settings.cassandra_manage_auth:
                cassandra_auth.ensure_auth_replication(session, settings.cassandra_local_dc)
                if cassandra_auth.disable_default_superuser(session):
                    self.say("default superuser cassandra disabled (LOGIN = false, SUPERUSER = false)")
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
                self.say(f"role {app.name} ({outcome}): SELECT and MODIFY on keyspace {settings.cassandra_keyspace}")
            return applied

        try:
            applied = self._retrying("schema migration", step)
        except ValueError as exc:
            raise MigrationFailed(str(exc)) from None
        finally:
            cluster.shutdown()
        return applied, f"cassandra {hosts} keyspace {settings.cassandra_keyspace}"

    def _connect(self, settings: Settings):
        """(cluster, session) once a node answers; _Refused on bad credentials; MigrationFailed at
        the deadline."""
        while True:
            cluster = cassandra_session.build_cluster(settings)
            try:
                with cassandra_session.quiet_connect_errors():  # the cause is reported below
                    return cluster, cluster.connect()
            except NoHostAvailable as exc:
                cluster.shutdown()
                if _auth_failed(exc):
                    raise _Refused() from None
                if time.monotonic() >= self.deadline:
                    raise MigrationFailed(
                        f"Cassandra at {self.hosts}:{settings.cassandra_port} not reachable after {self.wait:g} s",
                        unavailable=True,
                    ) from None
                time.sleep(2)

    def _connect_or_raise(self, settings: Settings):
        """_connect, with a refusal turned into a driver error that _retrying retries: a role created
        a moment ago may not have reached the node that answers the login yet."""
        try:
            return self._connect(settings)
        except _Refused:
            raise DriverException(f"Cassandra refused the role {settings.cassandra_username!r} (yet)") from None

    def _retrying(self, what: str, step: Callable[[], T]) -> T:
        """``step()``, run again on a driver error until the deadline (every step is idempotent)."""
        while True:
            try:
                return step()
            except (DriverException, NoHostAvailable) as exc:
                # The usual failure is transient: a node restarted a moment ago is sent a statement
                # on a keyspace it has not received yet ("keyspace ... does not exist").
                if time.monotonic() >= self.deadline:
                    message = f"{what} on Cassandra at {self.hosts} failed: {exc}"
                    raise MigrationFailed(message, unavailable=True) from None
                self.warn(f"{what} failed, retrying: {exc}")
                time.sleep(1)

    def _bootstrap_admin(self, admin: cassandra_auth.Role) -> None:
        """First run on a cluster with authentication: log in as cassandra/cassandra and create the
        admin superuser (cassandra_auth); the caller then logs in as it and disables cassandra."""
        settings = self.settings
        default = cassandra_auth.DEFAULT_SUPERUSER
        boot = dataclasses.replace(settings, cassandra_username=default.name, cassandra_password=default.password)
        try:
            cluster, session = self._connect(boot)
        except _Refused:
            raise MigrationFailed(
                f"Cassandra at {self.hosts} refused role {admin.name!r} and the default superuser: the admin "
                "password in FC_CASSANDRA_PASSWORD is not the one the cluster has (was its Secret replaced?)",
                unavailable=True,
            ) from None
        try:

            def step() -> None:
                cassandra_auth.ensure_auth_replication(session, settings.cassandra_local_dc)
                # The admin's login was just refused: its password is not the Secret's.
                cassandra_auth.ensure_superuser(session, admin, lambda role: False)

            self._retrying("creating the admin role", step)
        finally:
            cluster.shutdown()
        self.say(f"created superuser role {admin.name} (logged in as the default superuser cassandra)")


def _can_login(settings: Settings, role: cassandra_auth.Role) -> bool:
    """Whether ``role`` logs in with its password (a short connection of its own)."""
    probe = dataclasses.replace(settings, cassandra_username=role.name, cassandra_password=role.password)
    cluster = cassandra_session.build_cluster(probe)
    try:
        with cassandra_session.quiet_connect_errors():
            cluster.connect()
        return True
    except Exception as exc:  # noqa: BLE001 - any refusal means: set the password
        if _auth_failed(exc):
            return False
        raise
    finally:
        cluster.shutdown()


def _auth_failed(exc: Exception) -> bool:
    errors = getattr(exc, "errors", {}) or {}
    return any(isinstance(err, AuthenticationFailed) for err in errors.values())
