"""Prometheus metrics of the serving application (names are a contract with alerts and dashboards).

Under gunicorn, ``fashion-classifier serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
imports prometheus_client, so every worker writes its values to memory-mapped files there and
the gunicorn master serves their sum on its own port (``server.metrics_server``, ``FC_METRICS_PORT``):
counters and histograms add up, and each gauge says how workers combine (``multiprocess_mode``).
Without that variable (tests, ``flask run``) the same metrics live in the process's default
registry, and ``render()`` reads them.

The prediction log's metrics (``fc_predlog_*``) are defined in ``predlog.metrics``.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from fashion_classifier import __version__
from fashion_classifier.config import MULTIPROC_ENV

# Latency buckets around the service's range: from one image up to big batches (bench/results).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

HTTP_REQUESTS = Counter(
    "fc_http_requests",
    "HTTP requests answered, by route template, method and status code",
    ["endpoint", "method", "status"],
)
HTTP_DURATION = Histogram(
    "fc_http_request_duration_seconds",
    "Time to compute a response, by route template",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
GRPC_REQUESTS = Counter(
    "fc_grpc_requests",
    "gRPC calls of the Open Inference Protocol answered, by method and status code",
    ["method", "code"],
)
GRPC_DURATION = Histogram(
    "fc_grpc_request_duration_seconds",
    "Time to answer a gRPC call, by method",
    ["method"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "fc_http_requests_in_flight",
    "Requests being processed (sum over workers)",
    multiprocess_mode="livesum",
)
PREDICTIONS = Counter(
    "fc_predictions",
    "Images classified, by predicted label, API, the model version that answered and its rollout arm",
    ["label", "source", "model_version", "arm"],
)
CONFIDENCE = Histogram(
    "fc_prediction_confidence",
    "Probability of the predicted class, by the model version that answered",
    ["model_version"],
    buckets=_CONFIDENCE_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "fc_inference_duration_seconds",
    "Time the model took for one request's batch, by model version",
    ["model_version"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_ERRORS = Counter(
    "fc_inference_errors",
    "Batches the model failed to run (the request answered 500), by model version",
    ["model_version"],
)
# A shadow candidate's predictions, compared with the served ones; dropped when its queue is full.
SHADOW_PREDICTIONS = Counter(
    "fc_shadow_predictions",
    "Images a shadow candidate also predicted, by its version and whether it agreed with the served class",
    ["model_version", "agreed"],
)
SHADOW_DROPPED = Counter(
    "fc_shadow_dropped", "Images a shadow candidate skipped because its queue was full", ["model_version"]
)
# 1 for the version(s) being served; while workers disagree (mid-reload) both versions show 1.
MODEL_INFO = Gauge(
    "fc_model_info",
    "Model version being served (value 1)",
    ["version", "architecture"],
    multiprocess_mode="livemax",
)
MODEL_LOAD_SECONDS = Histogram(
    "fc_model_load_seconds",
    "Time to verify, load, validate and warm a model version",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# 1 for a rollout's candidate; its mode (canary, shadow) and canary weight in percent are labels.
MODEL_CANDIDATE_INFO = Gauge(
    "fc_model_candidate_info",
    "Rollout candidate being served beside the current version (value 1)",
    ["version", "architecture", "mode", "weight"],
    multiprocess_mode="livemax",
)
# The store's record of rollout moves (ROLLOUTS.jsonl), the same in every worker and pod on one store;
# auto-rollback counts the candidates the guard withdrew.
ROLLOUT_MOVES = Gauge(
    "fc_rollout_moves",
    "Rollout moves recorded in the model store, by action (set, promote, rollback, auto-rollback, demote)",
    ["action"],
    multiprocess_mode="livemax",
)
MODEL_RELOADS = Counter("fc_model_reloads", "Hot reloads: a newly published version swapped in")
MODEL_LOAD_FAILURES = Counter("fc_model_load_failures", "Model versions refused (checksum, load or validation failed)")
# A worker without a model answers 503 on predictions, so the minimum over workers is what matters.
MODEL_READY = Gauge("fc_model_ready", "1 when a model is loaded (minimum over workers)", multiprocess_mode="livemin")
FEEDBACK = Counter(
    "fc_feedback",
    "Feedback received, by the model version that predicted and whether it was right",
    ["model_version", "correct"],
)
# Which build serves: every worker of one master sets the same labels, so "livemax" shows one sample
# (not one per worker), and a replaced worker's labels leave with it.
BUILD_INFO = Gauge(
    "fc_build_info",
    "The build being served (value 1): package version, git commit, Python version",
    ["version", "commit", "python"],
    multiprocess_mode="livemax",
)


def record_build(commit: str) -> None:
    """Set ``fc_build_info`` for this process: the package's version, ``commit`` (FC_BUILD_COMMIT), Python's."""
    BUILD_INFO.labels(__version__, commit, platform.python_version()).set(1)


def observe_predictions(
    classes: np.ndarray, probs: np.ndarray, labels: Sequence[str], source: str, version: str, arm: str
) -> None:
    """Count a batch of predictions (predicted classes, their probability rows) of one model version.

    A batch costs one increment per label present and one per histogram bucket, not two
    metric updates per image, which a large batch would otherwise pay hundreds of times.
    """
    confidence = _confidence(version)
    if len(classes) == 1:
        k = int(classes[0])
        _predictions(labels[k], source, version, arm).inc()
        confidence.observe(float(probs[0, k]))
        return
    counts = np.bincount(classes, minlength=len(labels))
    for k in np.flatnonzero(counts):
        _predictions(labels[k], source, version, arm).inc(int(counts[k]))
    observe_many(confidence, probs[np.arange(len(classes)), classes])


# labels() looks a child up under a lock on every call; the children are few (labels × sources ×
# versions served by one process) and live as long as it does.
@functools.cache
def _predictions(label: str, source: str, version: str, arm: str) -> Counter:
    return PREDICTIONS.labels(label, source, version, arm)


@functools.cache
def _confidence(version: str) -> Histogram:
    return CONFIDENCE.labels(version)


@functools.cache
def inference_duration(version: str) -> Histogram:
    return INFERENCE_DURATION.labels(version)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Observe many values at once; same result as calling ``observe`` for each."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) == 1:
        histogram.observe(float(values[0]))
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # a prometheus_client without these internals
        for value in values:
            histogram.observe(float(value))
        return
    # observe() increments the first bucket whose bound is >= the value (buckets are stored
    # non-cumulative and summed when collected); searchsorted(side="left") finds exactly that.
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(index, minlength=len(bounds))
    for i in np.flatnonzero(counts):
        buckets[i].inc(int(counts[i]))
    total.inc(float(values.sum()))


def multiprocess_dir() -> Path | None:
    raw = os.environ.get(MULTIPROC_ENV)
    return Path(raw) if raw else None


def render() -> tuple[bytes, str]:
    """The exposition text of all metrics, summed over workers in multiprocess mode."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
