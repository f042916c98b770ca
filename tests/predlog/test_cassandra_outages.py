"""Nothing is lost: a real `fashion-classifier serve` (gunicorn, 2 workers) under steady load
while Cassandra nodes are killed, stopped, or not started yet.

Each scenario counts the prediction ids the API answered and, once the load is over, waits for
exactly those rows in the cluster: rows == requests, no duplicates, 0 failed requests.
"""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from harness.server import ServerError, start_serve
from PIL import Image

from .conftest import HOSTS, stored_ids

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]

OUTAGE_SECONDS = 30


def _png() -> bytes:
    buf = io.BytesIO()
    pixels = np.random.default_rng(7).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(buf, "PNG")
    return buf.getvalue()


class Server:
    """`fashion-classifier serve` (2 workers) logging to the test keyspace."""

    def __init__(self, keyspace: str, model_store: Path, work: Path, hosts: tuple[str, ...] = HOSTS) -> None:
        extra = {
            "FC_CASSANDRA_HOSTS": ",".join(hosts),
            "FC_CASSANDRA_KEYSPACE": keyspace,
            "FC_LOG_LEVEL": "warning",
        }
        try:
            self.process = start_serve(work, model_store, workers=2, predlog="cassandra", extra_env=extra)
        except ServerError as exc:
            pytest.fail(str(exc))
        self.url = self.process.base_url
        self.log_path = self.process.log_path

    def metric(self, name: str) -> float:
        text = requests.get(self.process.metrics_url, timeout=5).text
        match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
        assert match, f"{name} missing from /metrics"
        return float(match.group(1))

    def stop(self) -> None:
        self.process.stop(timeout=30)


class Load:
    """Steady single-image predictions from a few client threads until stopped."""

    def __init__(self, url: str, threads: int = 3, pause: float = 0.01) -> None:
        self._url = url + "/api/v1/predict"
        self._body = _png()
        self._pause = pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.ids: list[uuid.UUID] = []
        self.failures: list[str] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                resp = session.post(self._url, data=self._body, headers={"Content-Type": "image/png"}, timeout=10)
                if resp.status_code == 200:
                    pid = uuid.UUID(resp.json()["predictions"][0]["prediction_id"])
                    with self._lock:
                        self.ids.append(pid)
                else:
                    with self._lock:
                        self.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
            except requests.RequestException as exc:
                with self._lock:
                    self.failures.append(repr(exc))
            time.sleep(self._pause)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.ids)


def _days(ids):
    from fashion_classifier.predlog.days import day_of_id

    return {day_of_id(i) for i in ids}


def _until(check, timeout: float, what: str) -> None:  # noqa: ANN001
    """Wait for exactly the state a test asserts next (gauges follow events by a moment)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.2)


def _wait_for_rows(session, keyspace, ids, timeout: float, consistency=None) -> list[uuid.UUID]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            stored = stored_ids(session, keyspace, _days(ids), consistency)
        except Exception as exc:  # a node coming back can refuse a read for a moment
            stored = [f"read failed: {exc}"]
        if sorted(map(str, stored)) == sorted(map(str, ids)) or time.monotonic() > deadline:
            return stored
        time.sleep(1)


@pytest.fixture
def serve(keyspace, model_store, tmp_path, cassandra_cluster):
    servers: list[Server] = []

    def start() -> Server:
        server = Server(keyspace, model_store, tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    cassandra_cluster.restore()


def _assert_nothing_lost(load: Load, stored: list, server: Server) -> None:
    assert load.failures == [], f"{len(load.failures)} failed requests, first: {load.failures[:3]}"
    assert len(load.ids) == len(set(load.ids)) > 0
    assert len(stored) == len(set(stored)), "duplicate rows"
    missing = set(load.ids) - set(stored)
    assert not missing and len(stored) == len(load.ids), (
        f"{len(missing)} of {len(load.ids)} predictions missing; serve log tail:\n"
        + server.log_path.read_text()[-3000:]
    )


def test_sigkill_of_node_2_under_load_loses_nothing(serve, cassandra_cluster, admin_session, keyspace):
    from cassandra import ConsistencyLevel

    server = serve()
    load = Load(server.url)
    time.sleep(4)
    cassandra_cluster.kill(2)
    killed_at = load.count
    time.sleep(10)
    load.stop()
    assert load.count > killed_at + 100, "the load did not go on while node 2 was dead"
    # node 2 is still down: read what node 1 has
    stored = _wait_for_rows(admin_session, keyspace, load.ids, 60, ConsistencyLevel.ONE)
    _assert_nothing_lost(load, stored, server)


def test_both_nodes_down_for_30s_spools_and_replays(serve, cassandra_cluster, admin_session, keyspace):
    server = serve()
    load = Load(server.url)
    time.sleep(3)
    cassandra_cluster.stop()
    down_at, served_before = time.monotonic(), load.count
    _until(lambda: server.metric("fc_predlog_connected") == 0, OUTAGE_SECONDS / 2, "the log to see the outage")
    _until(lambda: server.metric("fc_predlog_spool_rows") > 0, OUTAGE_SECONDS / 2, "rows in the spool")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    assert load.count > served_before + 200, "predictions were not served during the outage"
    cassandra_cluster.start()
    time.sleep(5)
    load.stop()
    stored = _wait_for_rows(admin_session, keyspace, load.ids, 90)
    _assert_nothing_lost(load, stored, server)
    deadline = time.monotonic() + 30
    while server.metric("fc_predlog_spool_rows") > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert server.metric("fc_predlog_spool_rows") == 0
    assert server.metric("fc_predlog_replayed_rows_total") > 0


def test_service_started_before_cassandra_logs_once_it_is_up(serve, cassandra_cluster, admin_session, keyspace):
    cassandra_cluster.stop()
    server = serve()  # starts and becomes ready with no Cassandra at all
    load = Load(server.url)
    time.sleep(8)
    assert load.count > 50 and load.failures == []
    assert server.metric("fc_predlog_connected") == 0
    cassandra_cluster.start()
    time.sleep(3)
    load.stop()
    stored = _wait_for_rows(admin_session, keyspace, load.ids, 90)
    _assert_nothing_lost(load, stored, server)
    # Rows stored means some worker connected; every worker's gauge follows on its own.
    _until(lambda: server.metric("fc_predlog_connected") == 1, 30, "every worker connected")
