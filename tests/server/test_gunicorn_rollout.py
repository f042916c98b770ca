"""A canary under real gunicorn: two workers, 20,000 requests, then a promotion under load."""

from __future__ import annotations

import http.client
import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
from harness.server import serve_command, start_serve
from inference.store_copies import other_version, publish_constant
from prometheus_client.parser import text_string_to_metric_families

from fashion_classifier.artifacts import rollout, store

REQUESTS = 20_000
BODY = json.dumps(
    {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 28, 28], "data": np.zeros(784).tolist()}]}
).encode()


def metric(server, name):
    """{(model version, arm): value} of one metric's samples, summed over the other labels."""
    text = requests.get(server.metrics_url, timeout=5).text
    found = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                found[(s.labels.get("model_version", s.labels.get("version")), s.labels.get("arm"))] += s.value
    return found


class Client(threading.Thread):
    """Sends V2 requests, each with its own X-Request-ID, over a kept-alive connection (renewed
    every 100 requests so both workers get some); records every status and answering version."""

    def __init__(self, port, ids):
        super().__init__(daemon=True)
        self.port, self.ids = port, ids
        self.answers: list[tuple[int, str | None, float]] = []
        self.stop = threading.Event()

    def run(self):
        conn = None
        for n, request_id in enumerate(self.ids):
            if self.stop.is_set():
                break
            if conn is None or n % 100 == 0:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request(
                "POST",
                "/v2/models/fashion/infer",
                BODY,
                {"Content-Type": "application/json", "X-Request-ID": request_id},
            )
            response = conn.getresponse()
            body = response.read()
            version = json.loads(body).get("model_version") if response.status == 200 else None
            self.answers.append((response.status, version, time.monotonic()))


def send(port, ids, threads=2):
    clients = [Client(port, ids[i::threads]) for i in range(threads)]
    for c in clients:
        c.start()
    return clients


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_a_canary_gets_its_share_and_a_promotion_under_load_fails_nothing(model_store, tmp_path):
    current = store.current_version(model_store)
    candidate = other_version(model_store)
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 10)
    # Set before the start: a worker answers only once its app loaded both versions.
    server = start_serve(tmp_path, model_store, extra_env={"FC_RELOAD_INTERVAL": "0.2"})
    try:
        clients = send(server.port, [f"canary-{i}" for i in range(REQUESTS)])
        for c in clients:
            c.join(240)
        answers = [a for c in clients for a in c.answers]
        assert len(answers) == REQUESTS and {status for status, _, _ in answers} == {200}
        by_version = Counter(version for _, version, _ in answers)
        assert set(by_version) == {current, candidate}
        assert 0.09 <= by_version[candidate] / REQUESTS <= 0.11, by_version
        predicted = metric(server, "fc_predictions_total")
        assert predicted == {(current, "current"): by_version[current], (candidate, "candidate"): by_version[candidate]}

        # Promotion under load: every request answered, both workers switch without a restart.
        workers = server.worker_pids()
        clients = send(server.port, [f"promote-{i}" for i in range(REQUESTS)])
        time.sleep(0.5)
        rollout.promote(model_store)
        deadline = time.monotonic() + 20
        while metric(server, "fc_model_reloads_total")[(None, None)] < 2:  # once per worker
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)
        switched = time.monotonic()
        time.sleep(0.5)
        for c in clients:
            c.stop.set()
            c.join(30)
        during = [a for c in clients for a in c.answers]
        assert {status for status, _, _ in during} == {200}, Counter(status for status, _, _ in during)
        assert {version for _, version, at in during if at > switched} == {candidate}
        assert sorted(server.worker_pids()) == sorted(workers)
        by_version.update(version for _, version, _ in during)
        assert server.stop() == 0
    finally:
        server.stop()
    # Every answer is in the log, under the version that gave it.
    with sqlite3.connect(Path(tmp_path / "predictions.sqlite3")) as db:
        logged = dict(db.execute("SELECT model_version, count(*) FROM predictions GROUP BY model_version"))
    assert logged == dict(by_version)


@pytest.mark.timeout(300)
def test_the_guard_withdraws_a_broken_candidate_and_every_worker_follows(model_store, tmp_path, sample_images):
    images, labels = sample_images
    current = store.current_version(model_store)
    broken = publish_constant(model_store, "constant")  # answers "T-shirt/top" to everything
    rollout.set_candidate(model_store, broken, rollout.CANARY, 50)
    server = start_serve(tmp_path, model_store, extra_env={"FC_RELOAD_INTERVAL": "0.2"})
    try:
        # Users answer, half of them by the candidate, and tell the service the true class. One
        # kept-alive connection: feedback reaches the worker that answered, which knows the id.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        by_version = Counter()
        for i in range(100):
            k = i % len(images)
            body = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "pixels",
                            "datatype": "FP32",
                            "shape": [1, 28, 28],
                            "data": (images[k] / 255.0).ravel().tolist(),
                        }
                    ]
                }
            )
            conn.request("POST", "/v2/models/fashion/infer", body, {"X-Session-ID": f"user-{i}"})
            answer = json.loads(conn.getresponse().read())
            by_version[answer["model_version"]] += 1
            prediction_id = next(o for o in answer["outputs"] if o["name"] == "prediction_id")["data"][0]
            conn.request(
                "POST",
                "/api/v1/feedback",
                json.dumps({"prediction_id": prediction_id, "true_label": int(labels[k])}),
                {"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
        assert min(by_version[current], by_version[broken]) >= 30, by_version  # the guard's minimum each
        database = tmp_path / "predictions.sqlite3"
        deadline = time.monotonic() + 30
        while _feedback_rows(database) < 100:  # the evidence is in the log
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)

        guard = subprocess.run(
            [*serve_command()[:-1], "model", "guard", "--model-dir", str(model_store)],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert guard.returncode == 0, guard.stderr
        assert f"candidate {broken} withdrawn: live accuracy" in guard.stdout, guard.stdout
        assert rollout.read_candidate(model_store) is None
        assert rollout.history(model_store)[-1]["action"] == "auto-rollback"

        # Every worker stops serving it: the gauge is the maximum over workers.
        deadline = time.monotonic() + 20
        while any(v for (version, _), v in metric(server, "fc_model_candidate_info").items() if version == broken):
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)
        assert _versions(server.port, 40) == {current}, server.log_tail()
        # And the withdrawal is counted where Prometheus scrapes.
        deadline = time.monotonic() + 20
        while _moves(server) != {**dict.fromkeys(rollout.ACTIONS, 0), "set": 1, "auto-rollback": 1}:
            assert time.monotonic() < deadline, _moves(server)
            time.sleep(0.05)
    finally:
        server.stop()


def _moves(server) -> dict[str, float]:
    text = requests.get(server.metrics_url, timeout=5).text
    return {
        s.labels["action"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "fc_rollout_moves"
    }


def _feedback_rows(database: Path) -> int:
    with sqlite3.connect(database) as db:
        try:
            return db.execute("SELECT count(*) FROM feedback").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0


def _versions(port, n):
    clients = send(port, [f"after-{i}" for i in range(n)], threads=1)
    clients[0].join(30)
    return {version for _, version, _ in clients[0].answers}
