"""The request/prediction metrics, in one process (the metrics port and multiprocess sums: test_metrics_server).

The app itself has no ``/metrics``: the gunicorn master serves the metrics on their own port.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from fashion_classifier import metrics
from fashion_classifier.metrics import observe_many


def scrape(client=None) -> dict[tuple[str, tuple], float]:
    """This process's metrics (the app's are in the default registry here)."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_prediction_and_model_metrics(client, state, png):
    before = scrape(client)
    for i in range(3):
        client.post("/api/v1/predict", data={"file": (io.BytesIO(png(i)), "x.png")})
    client.post("/api/v1/predict", data={"file": (io.BytesIO(b"junk"), "x.txt")})
    client.get("/v2/health/ready")
    after = scrape(client)
    ep = {"endpoint": "/api/v1/predict", "method": "POST"}
    assert (
        value(after, "fc_http_requests_total", **ep, status="200")
        - value(before, "fc_http_requests_total", **ep, status="200")
        == 3
    )
    assert (
        value(after, "fc_http_requests_total", **ep, status="415")
        - value(before, "fc_http_requests_total", **ep, status="415")
        == 1
    )
    count = "fc_http_request_duration_seconds_count"
    assert value(after, count, endpoint="/api/v1/predict") - value(before, count, endpoint="/api/v1/predict") == 4
    predicted = sum(
        v for (name, labels), v in after.items() if name == "fc_predictions_total" and ("source", "api") in labels
    )
    predicted_before = sum(
        v for (name, labels), v in before.items() if name == "fc_predictions_total" and ("source", "api") in labels
    )
    assert predicted - predicted_before == 3
    version = {"model_version": state.model.version}
    for name in ("fc_prediction_confidence_count", "fc_inference_duration_seconds_count"):
        assert value(after, name, **version) - value(before, name, **version) == 3, name
    arm = {**version, "arm": "current", "source": "api"}
    assert (
        sum(
            v
            for (name, labels), v in after.items()
            if name == "fc_predictions_total" and set(arm.items()) <= set(labels)
        )
        - sum(
            v
            for (name, labels), v in before.items()
            if name == "fc_predictions_total" and set(arm.items()) <= set(labels)
        )
        == 3
    )
    arch = state.model.metadata["architecture"]
    assert value(after, "fc_model_info", version=state.model.version, architecture=arch) == 1.0
    assert value(after, "fc_model_ready") == 1.0
    assert value(after, "fc_http_requests_in_flight") == 0.0
    assert ("fc_model_load_seconds_count", ()) in after


def test_the_app_does_not_serve_metrics(client):
    response = client.get("/metrics", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.is_json and response.get_json()["error"]
    assert b"fc_http_requests_total" not in response.get_data()


def test_unknown_paths_share_one_label(client):
    for path in ("/a", "/b/c", "/d?e=f"):
        client.get(path)
    samples = scrape(client)
    endpoints = {dict(labels).get("endpoint") for (name, labels) in samples if name == "fc_http_requests_total"}
    assert "unmatched" in endpoints and "/a" not in endpoints


def test_a_failing_view_is_counted_as_500_and_leaves_no_request_in_flight(app, client):
    def boom():
        raise RuntimeError("a bug")

    app.add_url_rule("/boom", "boom", boom)
    before = scrape(client)
    assert client.get("/boom").status_code == 500
    after = scrape(client)
    key = {"endpoint": "/boom", "method": "GET", "status": "500"}
    assert value(after, "fc_http_requests_total", **key) - value(before, "fc_http_requests_total", **key) == 1
    assert value(after, "fc_http_request_duration_seconds_count", endpoint="/boom") == 1
    assert value(after, "fc_http_requests_in_flight") == 0.0


def test_observe_many_equals_observing_one_by_one():
    values = np.random.default_rng(1).random(500) * 1.2
    values[:5] = [0.5, 0.2, 1.0, 0.0, 1.2]  # bucket edges and beyond the last bound
    one, many = CollectorRegistry(), CollectorRegistry()
    buckets = (0.2, 0.5, 0.9, 1.0)
    h_one = Histogram("h", "h", buckets=buckets, registry=one)
    h_many = Histogram("h", "h", buckets=buckets, registry=many)
    for v in values:
        h_one.observe(float(v))
    observe_many(h_many, values)

    def samples(registry):
        return {
            (s.name, s.labels.get("le")): s.value
            for s in next(iter(registry.collect())).samples
            if s.name != "h_created"
        }

    a, b = samples(one), samples(many)
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]) <= 1e-9 * max(1.0, abs(a[key])), key


def test_observe_many_fills_the_buckets_itself_through_the_histogram_internals(monkeypatch):
    """prometheus-client is pinned to one release series (tests/test_dependencies.py); this fails
    first when an upgrade reshapes the internals observe_many writes, instead of it quietly
    falling back to one observe() per value."""
    histogram = Histogram("h", "h", buckets=(0.5, 1.0), registry=CollectorRegistry())
    assert list(histogram._upper_bounds) == [0.5, 1.0, float("inf")]
    assert len(histogram._buckets) == 3 and all(callable(b.inc) for b in histogram._buckets)
    monkeypatch.setattr(Histogram, "observe", lambda self, value: pytest.fail("observed one by one"))
    observe_many(histogram, np.array([0.2, 0.7, 0.9, 3.0]))
    assert [b.get() for b in histogram._buckets] == [1, 2, 1] and histogram._sum.get() == pytest.approx(4.8)


def test_no_metric_label_shadows_a_scrape_target_label():
    """The ServiceMonitor honours the app's labels (honorLabels, for `endpoint`): the app must then
    never set one that Prometheus gives the target, or a pod could pose as another."""
    from prometheus_client import REGISTRY

    from fashion_classifier.predlog import metrics as predlog_metrics  # noqa: F401 - registers its metrics

    names = {name for collector in list(REGISTRY._collector_to_names) for name in getattr(collector, "_labelnames", ())}
    assert "endpoint" in names
    assert not names & {"namespace", "pod", "service", "job", "instance", "container"}
