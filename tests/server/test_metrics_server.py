"""The metrics port: served by the gunicorn master, summed over workers, never on the app's port.

The first tests run a real 2-worker ``fashion-classifier serve``; the last ones the server class
alone (bounded connections and timeouts, which the master relies on to stay responsive).
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from harness.ports import free_port
from harness.server import ServerError, start_serve
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from fashion_classifier import __version__
from fashion_classifier.server import metrics_server
from fashion_classifier.server.metrics_server import MetricsServer

pytestmark = pytest.mark.timeout(120)

LIVE = "/v2/health/live"  # not the harness's readiness path, so every count here is the test's
COMMIT = "0123abc"  # what the Dockerfile would set from its REVISION build argument


@pytest.fixture(scope="module")
def server(shipped_store, tmp_path_factory):
    srv = start_serve(
        tmp_path_factory.mktemp("metrics-port"), shipped_store, workers=2, extra_env={"FC_BUILD_COMMIT": COMMIT}
    )
    yield srv
    srv.stop()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def live_count_of(metrics_dir: Path, pid: int) -> float:
    """GET /v2/health/live answered 200 by one worker, read from its own multiprocess file."""
    db = metrics_dir / f"counter_{pid}.db"
    if not db.exists():
        return 0.0
    for metric in MultiProcessCollector.merge([str(db)], accumulate=True):
        for s in metric.samples:
            if s.name == "fc_http_requests_total" and s.labels.get("endpoint") == LIVE:
                return s.value
    return 0.0


def _get_live(base_url: str) -> int:
    # A new connection per request: gunicorn's workers then share them out.
    return requests.get(base_url + LIVE, timeout=10, headers={"Connection": "close"}).status_code


def test_the_app_port_has_no_metrics_and_the_metrics_port_sums_both_workers(server):
    response = requests.get(server.base_url + "/metrics", timeout=5, headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.json()["error"]
    assert "fc_http_requests_total" not in response.text

    metrics_dir = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])
    workers = server.worker_pids()
    assert len(workers) == 2
    key = ("fc_http_requests_total", (("endpoint", LIVE), ("method", "GET"), ("status", "200")))
    before = samples(requests.get(server.metrics_url, timeout=5).text).get(key, 0.0)
    own_before = {pid: live_count_of(metrics_dir, pid) for pid in workers}

    def served() -> dict[int, float]:
        return {pid: live_count_of(metrics_dir, pid) - own_before[pid] for pid in workers}

    sent = 0
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Until both workers have answered some (which worker accepts is the kernel's choice).
        while not all(served().values()):
            assert time.monotonic() < deadline, served()
            assert list(pool.map(lambda _: _get_live(server.base_url), range(16))) == [200] * 16
            sent += 16
    assert sum(served().values()) == sent, served()

    scraped = requests.get(server.metrics_url, timeout=5)
    assert scraped.status_code == 200 and scraped.headers["Content-Type"].startswith("text/plain")
    values = samples(scraped.text)
    assert values[key] - before == sent  # both workers' counts, summed
    assert values[("fc_model_ready", ())] == 1.0
    # The scrape is not a request to a worker: nothing in flight, and no route counts it.
    assert values[("fc_http_requests_in_flight", ())] == 0.0
    assert not [k for k in values if dict(k[1]).get("endpoint") == "/metrics"]


def test_build_info_is_one_sample_however_many_workers(server):
    metrics_dir = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])
    workers = server.worker_pids()
    # Each worker sets it as it creates the app: wait until both files hold it.
    deadline = time.monotonic() + 20
    while not all(_holds_build_info(metrics_dir / f"gauge_livemax_{pid}.db") for pid in workers):
        assert time.monotonic() < deadline, f"not every worker set fc_build_info\n{server.log_tail()}"
        time.sleep(0.1)
    text = requests.get(server.metrics_url, timeout=5).text
    found = [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == "fc_build_info"]
    assert len(found) == 1, found
    assert found[0].labels == {"version": __version__, "commit": COMMIT, "python": platform.python_version()}
    assert found[0].value == 1.0


def _holds_build_info(db: Path) -> bool:
    if not db.exists():
        return False
    return any(s.name == "fc_build_info" for m in MultiProcessCollector.merge([str(db)]) for s in m.samples)


def test_the_metrics_port_answers_while_every_worker_is_stuck(server):
    workers = server.worker_pids()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = requests.get(server.metrics_url, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    assert response.status_code == 200 and "fc_http_requests_total" in response.text
    assert elapsed < 2.0, elapsed  # generous: a scrape takes a few ms; on the app's port it would hang
    assert requests.get(server.base_url + LIVE, timeout=10).status_code == 200


def test_only_the_master_listens_on_the_metrics_port(server):
    port = int(server.env["FC_METRICS_PORT"])
    inodes = _listening_inodes(port)
    assert inodes, f"nothing listens on {port}"
    # `fashion-classifier serve` execs gunicorn: the process started is the master.
    assert _socket_inodes(server.proc.pid) & inodes, "the master does not hold the metrics socket"
    for pid in server.worker_pids():
        assert not _socket_inodes(pid) & inodes, f"worker {pid} inherited the metrics socket"


def test_other_paths_on_the_metrics_port_are_404_json(server):
    response = requests.get(server.metrics_url.replace("/metrics", "/api/v1/predictions"), timeout=5)
    assert response.status_code == 404 and "only GET /metrics" in response.json()["error"]


def test_a_taken_metrics_port_stops_the_server_at_startup(shipped_store, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError) as raised:
            start_serve(tmp_path, shipped_store, workers=1, extra_env={"FC_METRICS_PORT": str(port)}, timeout=30)
    message = str(raised.value)
    assert "exited with 1" in message and "FC_METRICS_PORT" in message and "Booting worker" not in message


def test_metrics_port_zero_serves_no_metrics(shipped_store, tmp_path):
    srv = start_serve(tmp_path, shipped_store, workers=1, extra_env={"FC_METRICS_PORT": "0"})
    try:
        assert requests.get(srv.base_url + "/metrics", timeout=5).status_code == 404
        assert "Serving metrics" not in srv.log_tail(200)
        with pytest.raises(ServerError):
            srv.metrics_url  # noqa: B018 - the property raises
    finally:
        srv.stop()


def test_the_same_port_for_app_and_metrics_is_refused(shipped_store, tmp_path):
    port = free_port()
    with pytest.raises(ServerError) as raised:
        start_serve(
            tmp_path,
            shipped_store,
            workers=1,
            extra_env={"FC_PORT": str(port), "FC_METRICS_PORT": str(port)},
            timeout=30,
        )
    assert "must differ from FC_PORT" in str(raised.value)


# --- the server class alone -------------------------------------------------------------------


@pytest.fixture
def metrics(tmp_path):
    srv = MetricsServer("127.0.0.1", 0, tmp_path).start()
    yield srv
    srv.close()


def _url(srv: MetricsServer) -> str:
    host, port = srv.address
    return f"http://{host}:{port}/metrics"


def _status(url: str) -> int | None:
    """The answer's status, or None when the server closed the connection without one."""
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return None


def test_connections_beyond_the_limit_are_closed_at_once(metrics):
    idle = [socket.create_connection(metrics.address, timeout=5) for _ in range(metrics_server.MAX_CONNECTIONS)]
    try:
        # The idle connections were queued first, so they hold every slot when this one arrives.
        started = time.monotonic()
        assert _status(_url(metrics)) is None
        assert time.monotonic() - started < 2
        idle.pop().close()  # frees one slot once its handler sees the end of the stream
        deadline = time.monotonic() + 10
        while (status := _status(_url(metrics))) != 200:
            assert status is None and time.monotonic() < deadline
    finally:
        for sock in idle:
            sock.close()


def test_an_idle_connection_is_closed_after_the_io_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics_server._Handler, "timeout", 0.3)
    srv = MetricsServer("127.0.0.1", 0, tmp_path).start()
    try:
        with socket.create_connection(srv.address, timeout=5) as sock:
            started = time.monotonic()
            assert sock.recv(1024) == b""  # the server hung up without an answer
            assert 0.2 < time.monotonic() - started < 4
    finally:
        srv.close()


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found
