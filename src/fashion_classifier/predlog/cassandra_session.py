"""Driver configuration: one place that turns Settings into a cassandra-driver Cluster.

Consistency is LOCAL_ONE for writes and reads. With the default replication factor 2, one
replica acknowledging is enough, so a write succeeds while one node is down (QUORUM of 2 is 2
and would fail it); the other replica catches up through hinted handoff and repair. The price
is that a read can miss a row the other replica has not received yet. For a prediction log
(append-only, keyed by id, replayed idempotently) availability of writes matters most.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from cassandra import ConsistencyLevel, ProtocolVersion, WriteType
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    RetryPolicy,
    TokenAwarePolicy,
)

from fashion_classifier.config import Settings

log = logging.getLogger(__name__)

WRITE_CONSISTENCY = ConsistencyLevel.LOCAL_ONE
REQUEST_TIMEOUT = 5.0  # seconds; a slower write is spooled and replayed later


class IdempotentWriteRetryPolicy(RetryPolicy):
    """Every statement of the log is idempotent (keyed by prediction id), so retrying a timed-out
    write once is always safe; the driver's default retries only batch-log writes. Beyond one
    retry the writer spools the rows instead of holding them in memory."""

    def on_write_timeout(self, query, consistency, write_type, required_responses, received_responses, retry_num):
        if retry_num == 0 and write_type in (WriteType.SIMPLE, WriteType.UNLOGGED_BATCH, WriteType.BATCH):
            return self.RETRY, consistency
        return self.RETHROW, None

    def on_unavailable(self, query, consistency, required_replicas, alive_replicas, retry_num):
        # Another coordinator may see the replicas alive; try it once.
        return (self.RETRY_NEXT_HOST, None) if retry_num == 0 else (self.RETHROW, None)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.cassandra_tls:
        return None
    context = ssl.create_default_context(cafile=str(settings.cassandra_ca_file) if settings.cassandra_ca_file else None)
    # Contact points are often IPs or service names that are not in the certificate; the CA
    # still authenticates the server.
    context.check_hostname = False
    return context


def build_cluster(settings: Settings) -> Cluster:
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)),
        retry_policy=IdempotentWriteRetryPolicy(),
        consistency_level=WRITE_CONSISTENCY,
        request_timeout=REQUEST_TIMEOUT,
    )
    auth = None
    if settings.cassandra_username:
        auth = PlainTextAuthProvider(username=settings.cassandra_username, password=settings.cassandra_password)
    return Cluster(
        contact_points=list(settings.cassandra_hosts),
        port=settings.cassandra_port,
        # Native protocol v5 (Cassandra 4.0 and later): no version negotiation on every connect.
        protocol_version=ProtocolVersion.V5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=auth,
        ssl_context=ssl_context(settings),
        connect_timeout=settings.cassandra_connect_timeout,
        control_connection_timeout=settings.cassandra_connect_timeout,
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=10.0),
        # Without TCP_NODELAY a batch larger than one segment waits for the server's delayed
        # ACK (~40 ms per request, measured here), which also keeps the server's threads busy.
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        # Detect a dead node on idle connections quickly, not after the OS TCP timeout.
        idle_heartbeat_interval=5,
        idle_heartbeat_timeout=5,
    )


_CONNECT_NOISE = ("Control connection failed to connect", "[control connection] Error connecting to")


class _QuietConnect(logging.Filter):
    """Drops the driver's own reports of a failed ``Cluster.connect`` (an ERROR with a traceback,
    and a WARNING per host) in the threads that asked for it: their callers retry every few seconds
    and say once what is wrong (e.g. "refused the login of role ..."), instead of a traceback per
    attempt. Reconnections of a connected cluster (other threads) are still logged."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.thread in self.threads and str(record.msg).startswith(_CONNECT_NOISE))


_QUIET = _QuietConnect()


@contextmanager
def quiet_connect_errors() -> Iterator[None]:
    driver = logging.getLogger("cassandra.cluster")
    if _QUIET not in driver.filters:
        driver.addFilter(_QUIET)
    ident = threading.get_ident()
    _QUIET.threads.add(ident)
    try:
        yield
    finally:
        _QUIET.threads.discard(ident)
