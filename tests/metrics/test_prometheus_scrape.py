"""Metrics of a 2-worker gunicorn serve, as a real Prometheus server scrapes and sums them.

Predictions are sent concurrently so both sync workers serve some (checked in each worker's
own multiprocess file); every expected value is then read back through Prometheus's HTTP API.
Prometheus scrapes the metrics port, which the gunicorn master serves: scrapes are not requests
to the workers (nothing in flight, nothing counted), and the app's port has no ``/metrics``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from harness.images import encode, load_test_split
from prometheus_client.multiprocess import MultiProcessCollector

from fashion_classifier.artifacts.store import current_path, current_version, load_metadata

pytestmark = pytest.mark.timeout(180)

SINGLE = 48  # one image per request
BATCH = 6  # one request with this many images
BAD = 5  # undecodable uploads (4xx)
PREDICT = "/api/v1/predict"


def _post_image(base_url: str, png: bytes, name: str) -> requests.Response:
    # No session: a new connection per request, so gunicorn hands them to both workers.
    return requests.post(base_url + PREDICT, files={"file": (name, png, "image/png")}, timeout=30)


@pytest.fixture(scope="module")
def traffic(server, data_dir):
    """Send the workload once; returns what the responses said."""
    images, _ = load_test_split(data_dir)
    pngs = [encode(images[i]) for i in range(SINGLE + BATCH)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        singles = list(pool.map(lambda i: _post_image(server.base_url, pngs[i], f"{i}.png"), range(SINGLE)))
        bad = list(pool.map(lambda i: _post_image(server.base_url, b"\x89PNG\r\n\x1a\n broken", "bad.png"), range(BAD)))
    batch = requests.post(
        server.base_url + PREDICT,
        timeout=30,
        files=[("file", (f"b{i}.png", pngs[SINGLE + i], "image/png")) for i in range(BATCH)],
    )
    assert all(r.status_code == 200 for r in singles), [r.text for r in singles if r.status_code != 200]
    assert batch.status_code == 200, batch.text
    assert all(400 <= r.status_code < 500 for r in bad), [(r.status_code, r.text) for r in bad]
    predictions = [p for r in singles for p in r.json()["predictions"]] + batch.json()["predictions"]
    assert len(predictions) == SINGLE + BATCH
    # Feedback: three confirmations and one correction.
    feedback = [(predictions[i], predictions[i]["class"]) for i in range(3)]
    feedback.append((predictions[3], (predictions[3]["class"] + 1) % 10))
    for pred, true_label in feedback:
        # A prediction another worker made may not be in the log yet: 409 says when to retry.
        for _ in range(20):
            r = requests.post(
                server.base_url + "/api/v1/feedback",
                timeout=30,
                json={"prediction_id": pred["prediction_id"], "true_label": true_label},
            )
            if r.status_code != 409:
                break
            time.sleep(float(r.headers["Retry-After"]))
        assert r.status_code == 200, r.text
    return {
        "labels": Counter(p["label"] for p in predictions),
        "bad_status": Counter(r.status_code for r in bad),
        "done_at": time.time(),
    }


def _predictions_in(db_file: Path) -> float:
    for metric in MultiProcessCollector.merge([str(db_file)], accumulate=True):
        if metric.name == "fc_predictions":
            return sum(s.value for s in metric.samples if s.name == "fc_predictions_total")
    return 0.0


def test_both_workers_served_predictions(server, traffic):
    metrics_dir = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])
    per_worker = {
        pid: _predictions_in(metrics_dir / f"counter_{pid}.db")
        for pid in server.worker_pids()
        if (metrics_dir / f"counter_{pid}.db").exists()
    }
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == SINGLE + BATCH


def test_prometheus_sees_the_summed_values(prometheus, server, traffic, store_copy):
    prometheus.wait_scraped_after(traffic["done_at"])
    assert prometheus.scalar(f'up{{job="{prometheus.job}"}}') == 1
    prometheus.wait_for("sum(fc_predictions_total)", SINGLE + BATCH)
    by_label = {
        r["metric"]["label"]: float(r["value"][1]) for r in prometheus.query("sum by (label) (fc_predictions_total)")
    }
    assert by_label == {label: float(n) for label, n in traffic["labels"].items()}
    assert prometheus.scalar('sum(fc_predictions_total{source="api"})') == SINGLE + BATCH
    assert prometheus.scalar("sum(fc_prediction_confidence_count)") == SINGLE + BATCH
    assert prometheus.scalar('sum(fc_prediction_confidence_bucket{le="0.2"})') == 0  # max of 10 probs >= 0.1

    requests_by_status = {
        r["metric"]["status"]: float(r["value"][1])
        for r in prometheus.query(f'sum by (status) (fc_http_requests_total{{endpoint="{PREDICT}",method="POST"}})')
    }
    assert requests_by_status == {
        "200": SINGLE + 1,
        **{str(s): float(n) for s, n in traffic["bad_status"].items()},
    }
    assert prometheus.scalar(f'sum(fc_http_request_duration_seconds_count{{endpoint="{PREDICT}"}})') == SINGLE + 1 + BAD
    assert prometheus.scalar('sum(fc_http_requests_total{endpoint="/api/v1/feedback",status="200"})') == 4

    version = current_version(store_copy)
    arch = load_metadata(current_path(store_copy))["architecture"]
    info = prometheus.query("fc_model_info")
    assert [(r["metric"]["version"], r["metric"]["architecture"], r["value"][1]) for r in info] == [
        (version, arch, "1")
    ]
    assert prometheus.scalar("fc_model_ready") == 1
    assert prometheus.scalar("sum(fc_model_load_seconds_count)") >= 2  # each worker loaded once
    assert prometheus.scalar("sum(fc_model_load_failures_total)") == 0

    assert prometheus.scalar(f'sum(fc_feedback_total{{model_version="{version}",correct="true"}})') == 3
    assert prometheus.scalar(f'sum(fc_feedback_total{{model_version="{version}",correct="false"}})') == 1
    live_accuracy = prometheus.scalar(
        'sum by (model_version) (fc_feedback_total{correct="true"}) / sum by (model_version) (fc_feedback_total)'
    )
    assert live_accuracy == pytest.approx(0.75)
    # Scrapes never reach a worker: nothing is in flight, and no request is counted for them.
    assert prometheus.scalar("fc_http_requests_in_flight") == 0
    assert prometheus.scalar('sum(fc_http_requests_total{endpoint="/metrics"})') is None


def test_exposition_passes_promtool(server, traffic):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus)"
    assert requests.get(server.base_url + "/metrics", timeout=10).status_code == 404
    exposition = requests.get(server.metrics_url, timeout=10)
    assert exposition.status_code == 200
    assert exposition.headers["Content-Type"].startswith("text/plain")
    check = subprocess.run([promtool, "check", "metrics"], input=exposition.content, capture_output=True, timeout=30)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    for name in (
        "fc_http_requests_total",
        "fc_http_request_duration_seconds_bucket",
        "fc_predictions_total",
        "fc_prediction_confidence_bucket",
        "fc_model_info",
        "fc_model_ready",
        "fc_feedback_total",
        "fc_http_requests_in_flight",
    ):
        assert f"\n{name}" in exposition.text, f"{name} missing from /metrics"


def test_the_guard_counts_each_version_s_inferences_through_prometheus(
    prometheus, server, traffic, store_copy, data_dir
):
    from fashion_classifier.rollout_guard import prometheus_counts

    version = current_version(store_copy)
    series = f'sum(fc_inference_duration_seconds_count{{model_version="{version}"}})'
    prometheus.wait_for("sum(fc_predictions_total)", SINGLE + BATCH)  # the earlier traffic, scraped
    before = prometheus.scalar(series)
    assert before and before > 0
    images, _ = load_test_split(data_dir)
    more = 20
    for i in range(more):
        assert _post_image(server.base_url, encode(images[100 + i]), f"m{i}.png").status_code == 200
    prometheus.wait_for(series, before + more)
    counts = prometheus_counts(prometheus.url, f'job="{prometheus.job}"', 3600)
    assert set(counts) == {version}
    ran, failed = counts[version]
    # increase() extrapolates past the first and last samples: more than was seen, but not back
    # beyond a count of 0, and by at most about one scrape interval (1 s) past the last sample.
    assert more <= ran <= 1.25 * (before + more) and failed == 0
    assert prometheus_counts(prometheus.url, 'job="another-release"', 3600) == {}
    with pytest.raises(ValueError, match="Prometheus answered 400: .*parse error"):  # Prometheus's own reason
        prometheus_counts(prometheus.url, 'job="unterminated', 60)
    with pytest.raises((OSError, ValueError)):  # not a Prometheus: a clear refusal, not a wrong count
        prometheus_counts(server.metrics_url.removesuffix("/metrics"), "", 60)
