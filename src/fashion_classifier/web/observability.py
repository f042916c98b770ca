"""Request metrics (count, latency, in-flight) for every route, and ``GET /metrics``."""

from __future__ import annotations

from time import perf_counter

from flask import Flask, Response, request

from fashion_classifier import metrics

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_T0 = "fc.t0"


def request_started() -> float:
    """When this request's processing began (for latencies recorded by the views)."""
    return request.environ.get(_T0) or perf_counter()


def install(app: Flask) -> None:
    # Labelled children are looked up once per label set: labels() costs ~1.5 µs per call.
    counters: dict[tuple[str, str, str], object] = {}
    histograms: dict[str, object] = {}

    @app.before_request
    def _start() -> None:
        request.environ[_T0] = perf_counter()
        metrics.IN_FLIGHT.inc()

    @app.after_request
    def _count(response: Response) -> Response:
        started = request.environ.get(_T0)
        if started is None:
            return response
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        key = (endpoint, method, str(response.status_code))
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = metrics.HTTP_REQUESTS.labels(*key)
        counter.inc()
        histogram = histograms.get(endpoint)
        if histogram is None:
            histogram = histograms[endpoint] = metrics.HTTP_DURATION.labels(endpoint)
        histogram.observe(perf_counter() - started)
        return response

    @app.teardown_request
    def _finish(exc: BaseException | None) -> None:
        if request.environ.pop(_T0, None) is not None:
            metrics.IN_FLIGHT.dec()

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(body, mimetype=None, content_type=content_type)
