"""Rows a killed worker held in memory are counted, so answered = stored + spooled + lost.

A real server (1 worker, the SQLite log): the test holds the database's write lock, so the
worker's rows wait in its memory (queued, and one batch blocked in its write); it SIGKILLs the
worker, and the master counts what it held in ``fc_predlog_lost_rows_total``.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import time

import pytest
import requests
from harness.ports import free_port
from harness.server import ServerProcess, serve_command, serve_env
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def server(shipped_store, tmp_path):
    port = free_port()
    env = serve_env(tmp_path, shipped_store, port=port, workers=1, predlog="sqlite")
    proc = ServerProcess([*serve_command()], env, port, tmp_path / "serve.log").start(timeout=60, workers=1)
    yield proc
    proc.stop()


def metric(server: ServerProcess, name: str) -> float:
    text = requests.get(server.metrics_url, timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def wait_for(check, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def stored_rows(path: str) -> int:
    with sqlite3.connect(path, timeout=10) as db:
        return db.execute("SELECT count(*) FROM predictions").fetchone()[0]


def test_a_killed_workers_rows_in_memory_are_counted_as_lost(server):
    database = server.env["FC_SQLITE_PATH"]
    image = io.BytesIO()
    Image.new("L", (28, 28), 200).save(image, format="PNG")

    def predict() -> None:
        files = {"file": ("a.png", image.getvalue())}
        response = requests.post(f"{server.base_url}/api/v1/predict", files=files, timeout=10)
        assert response.status_code == 200

    predict()
    wait_for(lambda: stored_rows(database) == 1, 10, "the first row written")
    lock = sqlite3.connect(database, timeout=10, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the worker's next write waits (its busy timeout is 10 s)
    try:
        for _ in range(30):
            predict()
        wait_for(lambda: metric(server, "fc_predlog_rows_in_memory") == 30, 5, "30 rows held in memory")
        (worker,) = server.worker_pids()
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: metric(server, "fc_predlog_lost_rows_total") == 30, 10, "30 rows counted as lost")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    server.wait_workers(1)
    assert metric(server, "fc_predlog_rows_in_memory") == 0  # the dead worker's gauge is gone
    assert "died holding 30 prediction-log rows" in server.log_tail()
    predict()
    wait_for(lambda: stored_rows(database) == 2, 10, "the new worker writing")
    assert metric(server, "fc_predlog_spooled_rows_total") == 0  # nothing else went anywhere: 32 = 2 + 30
