"""Request metrics (count, latency, in-flight) for every route.

They are served by the gunicorn master on their own port (``server.metrics_server``), never by
the app: its port has no ``/metrics`` (an unknown path, 404).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from flask import Flask, Response, request

from fashion_classifier import metrics

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Keys this middleware shares with the app through the WSGI environ.
T0 = "fc.t0"  # perf_counter() when the request reached the app
ENDPOINT = "fc.endpoint"  # the matched route template, for the labels


def request_started() -> float:
    """When this request's processing began (for latencies recorded by the views)."""
    return request.environ.get(T0) or perf_counter()


class RequestMetrics:
    """WSGI middleware around the Flask app: counts each request by route template, method and
    status, times it and keeps the in-flight gauge.

    A middleware rather than Flask's before/after/teardown hooks: those three cost ~20 µs a
    request (Flask looks up each hook's blueprints and whether it is a coroutine on every
    call), a twentieth of a one-image prediction. One ``after_request`` hook remains
    (``install``): it leaves the matched route template in the environ for the label, since
    Flask has dropped its request object from the environ by the time the app returns.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self._app = wsgi_app
        # Labelled children are looked up once per label set: labels() costs ~1.5 µs per call.
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = environ[T0] = perf_counter()
        status = "500"

        def _start_response(status_line: str, headers: list, exc_info: Any = None) -> Callable:
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        metrics.IN_FLIGHT.inc()
        try:
            body = self._app(environ, _start_response)
        finally:
            metrics.IN_FLIGHT.dec()
        endpoint = environ.get(ENDPOINT, "unmatched")
        method = environ.get("REQUEST_METHOD", "")
        key = (endpoint, method if method in _METHODS else "other", status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = metrics.HTTP_REQUESTS.labels(*key)
        counter.inc()
        histogram = self._histograms.get(endpoint)
        if histogram is None:
            histogram = self._histograms[endpoint] = metrics.HTTP_DURATION.labels(endpoint)
        histogram.observe(perf_counter() - started)
        return body


def install(app: Flask) -> None:
    app.wsgi_app = RequestMetrics(app.wsgi_app)

    @app.after_request
    def _route_template(response: Response) -> Response:
        rule = request.url_rule  # None for a path no route matches: "unmatched"
        if rule is not None:
            request.environ[ENDPOINT] = rule.rule
        return response
