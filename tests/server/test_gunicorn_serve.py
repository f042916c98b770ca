"""`fashion-classifier serve` for real: gunicorn, two workers, multiprocess metrics, hot reload."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from harness.ports import free_port
from harness.rawhttp import parse, send
from harness.server import ServerProcess, serve_command
from inference.store_copies import publish_copy
from prometheus_client.parser import text_string_to_metric_families

from fashion_classifier.config import Settings
from fashion_classifier.predlog import open_log


@pytest.fixture
def server(model_store, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FC_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        FC_MODEL_DIR=str(model_store),
        FC_PREDLOG="sqlite",
        FC_SQLITE_PATH=str(tmp_path / "p.sqlite3"),
        FC_SPOOL_DIR=str(tmp_path / "spool"),
        FC_RELOAD_INTERVAL="0.2",
        FC_MAX_UPLOAD_BYTES="200000",
        FC_METRICS_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    port = free_port()
    # Flags override the environment: FC_WORKERS/FC_PORT are deliberately wrong here.
    env.update(FC_WORKERS="5", FC_PORT="1")
    command = [*serve_command(), "--port", str(port), "--workers", "2", "--host", "127.0.0.1"]
    proc = ServerProcess(command, env, port, tmp_path / "serve.log")
    proc.start(timeout=60, workers=2)
    yield proc
    proc.stop()


def _settings_of(server: ServerProcess) -> Settings:
    return dataclasses.replace(
        Settings(),
        predlog="sqlite",
        sqlite_path=Path(server.env["FC_SQLITE_PATH"]),
        spool_dir=Path(server.env["FC_SPOOL_DIR"]),
    )


def scrape(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    text = requests.get(server.metrics_url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def predict(base_url: str, data: bytes, name: str = "a.png") -> requests.Response:
    return requests.post(f"{base_url}/api/v1/predict", files={"file": (name, data, "image/png")}, timeout=10)


def test_serve_end_to_end(server, model_store, png):
    base = server.base_url
    workers = server.worker_pids()
    assert len(workers) == 2
    for pid in workers:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "tensorflow/" not in maps and "libtensorflow_framework" not in maps
    metrics_dir = Path(
        dict(
            line.split("=", 1)
            for line in Path(f"/proc/{server.proc.pid}/environ").read_text().split("\0")
            if "=" in line
        )["PROMETHEUS_MULTIPROC_DIR"]
    )
    assert metrics_dir.name.startswith("fc-prometheus-") and metrics_dir.is_dir()

    # The server is ready when one worker is; the gauge is the minimum over workers, so it
    # reaches 1 once the other has loaded the model too (slower on a cold start).
    deadline = time.monotonic() + 20
    while scrape(server).get(("fc_model_ready", ())) != 1.0:
        assert time.monotonic() < deadline, f"not every worker reported a loaded model\n{server.log_tail()}"
        time.sleep(0.1)
    # Each worker opens the prediction log at boot: an idle server is not "disconnected".
    while scrape(server).get(("fc_predlog_connected", ())) != 1.0:
        assert time.monotonic() < deadline, f"the prediction log was not opened at boot\n{server.log_tail()}"
        time.sleep(0.1)
    assert Path(server.env["FC_SQLITE_PATH"]).is_file()
    # Metrics are summed over both workers: every scrape (the master answers it) agrees.
    for i in range(40):
        assert predict(base, png(i % 16)).status_code == 200
    for _ in range(6):
        samples = scrape(server)
        key = (
            "fc_http_requests_total",
            (("endpoint", "/api/v1/predict"), ("method", "POST"), ("status", "200")),
        )
        assert samples[key] == 40
        assert sum(v for (n, _), v in samples.items() if n == "fc_predictions_total") == 40
        assert samples[("fc_model_ready", ())] == 1.0, (workers, server.worker_pids(), server.log_tail())
    assert len(list(metrics_dir.glob("*.db"))) >= 2

    # Bad input over real HTTP: JSON 4xx, the workers survive.
    response = predict(base, b"GIF89a garbage", "x.gif")
    assert response.status_code == 422 and response.json()["error"]
    response = predict(base, b"\x89PNG\r\n\x1a\n" + bytes(300_000), "big.png")
    assert response.status_code == 413 and "200,000 bytes" in response.json()["error"]
    # Requests gunicorn's own parser refuses get JSON too, not its HTML page.
    for raw in (
        send(server.host, server.port, "GET", "/" + "a" * 9000, {}, b""),
        send(server.host, server.port, "GET", "/", {"X-Big": "b" * 9000}, b""),
    ):
        assert raw.status in (400, 414, 431), raw
        assert raw.headers["content-type"] == "application/json" and json.loads(raw.body)["error"]
    assert sorted(server.worker_pids()) == sorted(workers)

    # Hot reload: both workers switch to the new version without a restart. Answers alone cannot
    # show that: sequential requests may all land on the worker that reloaded first (an idle
    # sync worker's accept is not round-robin), so the loop also waits for both workers' counts.
    new = publish_copy(model_store, "hot")
    reloads = ("fc_model_reloads_total", ())
    deadline = time.monotonic() + 15
    seen: list[str] = []
    predicted_during_reload = 0
    while time.monotonic() < deadline:
        seen = [predict(base, png(0)).json()["predictions"][0]["model_version"] for _ in range(8)]
        predicted_during_reload += len(seen)
        if set(seen) == {new} and scrape(server).get(reloads, 0) >= 2:
            break
        time.sleep(0.2)
    assert set(seen) == {new}, server.log_tail()
    samples = scrape(server)
    assert samples[reloads] == 2, server.log_tail()  # once per worker
    arch = json.loads((model_store / "versions" / new / "metadata.json").read_text())["architecture"]
    assert samples[("fc_model_info", (("architecture", arch), ("version", new)))] == 1.0
    assert sorted(server.worker_pids()) == sorted(workers)

    # Graceful stop: exit 0, every prediction written, the temporary metrics directory removed.
    assert server.stop() == 0
    assert not metrics_dir.exists()
    log = open_log(_settings_of(server))
    try:
        assert sum(log.counts(datetime.now(UTC).date()).values()) == 40 + predicted_during_reload
    finally:
        log.close()


def test_a_body_that_stops_arriving_gets_a_json_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(
            b"POST /v2/models/fashion/infer HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"inputs"'
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    response = parse(raw)
    assert response.status == 408
    assert "stopped arriving" in json.loads(response.body)["error"]
    assert requests.get(f"{server.base_url}/v2/health/live", timeout=5).status_code == 200
