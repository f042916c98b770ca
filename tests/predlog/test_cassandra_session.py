"""Driver settings from config (no cluster needed: building a Cluster connects to nothing)."""

from __future__ import annotations

import ssl

from cassandra import ConsistencyLevel, WriteType
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from fashion_classifier.config import Settings
from fashion_classifier.predlog.cassandra_session import IdempotentWriteRetryPolicy, build_cluster


def test_defaults_local_one_token_aware_local_dc():
    cluster = build_cluster(Settings(cassandra_hosts=("10.0.0.1", "10.0.0.2"), cassandra_local_dc="dc-a"))
    profile = cluster.profile_manager.profiles[EXEC_PROFILE_DEFAULT]
    assert profile.consistency_level == ConsistencyLevel.LOCAL_ONE
    assert isinstance(profile.load_balancing_policy, TokenAwarePolicy)
    child = profile.load_balancing_policy._child_policy
    assert isinstance(child, DCAwareRoundRobinPolicy) and child.local_dc == "dc-a"
    assert isinstance(profile.retry_policy, IdempotentWriteRetryPolicy)
    assert cluster.auth_provider is None and cluster.ssl_context is None
    assert cluster.contact_points == ["10.0.0.1", "10.0.0.2"]


def test_credentials_and_tls_from_settings(tmp_path):
    settings = Settings(cassandra_username="svc", cassandra_password="s3cret", cassandra_tls=True)
    cluster = build_cluster(settings)
    assert isinstance(cluster.auth_provider, PlainTextAuthProvider)
    assert cluster.auth_provider.username == "svc"
    assert cluster.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert "s3cret" not in repr(settings)


def test_retry_policy_retries_idempotent_write_timeouts_once():
    policy = IdempotentWriteRetryPolicy()
    one = ConsistencyLevel.LOCAL_ONE
    assert policy.on_write_timeout(None, one, WriteType.UNLOGGED_BATCH, 1, 0, 0)[0] == policy.RETRY
    assert policy.on_write_timeout(None, one, WriteType.UNLOGGED_BATCH, 1, 0, 1)[0] == policy.RETHROW
    assert policy.on_unavailable(None, one, 1, 0, 0)[0] == policy.RETRY_NEXT_HOST


def test_the_driver_has_an_event_loop_on_this_python():
    # Python 3.12 removed asyncore, the driver's fallback reactor: its wheels' libev one must load.
    from cassandra.cluster import DefaultConnection
    from cassandra.io.libevreactor import LibevConnection

    assert DefaultConnection is LibevConnection
    assert build_cluster(Settings()).connection_class is LibevConnection
