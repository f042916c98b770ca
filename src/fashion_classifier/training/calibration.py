"""Calibration: temperature scaling, expected calibration error and the low-confidence threshold.

Numpy only (no TensorFlow), so the functions run on any logits and probabilities, in training and
in tests. The temperature and the threshold are chosen on a validation split held out from the
training set, never on the test set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The top-1 precision the predictions not marked low-confidence should reach (issue 23).
PRECISION_TARGET = 0.97
ECE_BINS = 15

# The temperature search range: far wider than any trained net needs (typically 0.5-3).
_LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0] or scores.shape[0] == 0:
        raise ValueError(f"expected scores [N, K] and labels [N] with N > 0, got {scores.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must lie in 0..{scores.shape[1] - 1}")
    return scores, labels


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    logits, labels = _check(logits, labels)
    z = logits / temperature
    top = z.max(axis=1)
    log_sum = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float(np.mean(log_sum - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, tolerance: float = 1e-6) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T).

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over log T in
    [0.05, 20] finds the minimum deterministically (no random start, no optimiser state).
    """
    logits, labels = _check(logits, labels)
    lo, hi = _LOG_T_BOUNDS
    a = hi - _GOLDEN * (hi - lo)
    b = lo + _GOLDEN * (hi - lo)
    fa = nll(logits, labels, math.exp(a))
    fb = nll(logits, labels, math.exp(b))
    while hi - lo > tolerance:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2.0)


def _top1(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's confidence (top-1 probability) and whether it is right."""
    probs, labels = _check(probs, labels)
    return probs.max(axis=1), probs.argmax(axis=1) == labels


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of 0 goes to the first bin.
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per equal-width confidence bin: lower, upper, count, mean confidence and accuracy.

    Empty bins are listed too, with count 0 and confidence and accuracy None (JSON null).
    """
    confidence, correct = _top1(probs, labels)
    index = _bin_index(confidence, bins)
    rows = []
    for i in range(bins):
        inside = index == i
        count = int(inside.sum())
        rows.append(
            {
                "lower": i / bins,
                "upper": (i + 1) / bins,
                "count": count,
                "confidence": float(confidence[inside].mean()) if count else None,
                "accuracy": float(correct[inside].mean()) if count else None,
            }
        )
    return rows


def ece_of_bins(rows: list[dict[str, Any]]) -> float:
    """Expected calibration error from :func:`reliability_bins` rows."""
    total = sum(row["count"] for row in rows)
    if total == 0:
        return 0.0
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in rows if row["count"]) / total)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-1 ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    return ece_of_bins(reliability_bins(probs, labels, bins))


def low_confidence_threshold(
    probs: np.ndarray, labels: np.ndarray, precision: float = PRECISION_TARGET
) -> dict[str, float]:
    """The confidence below which a prediction is marked low-confidence.

    ``threshold`` is the smallest confidence t, among the confidences seen, such that the top-1
    accuracy of the predictions with confidence >= t is at least ``precision``; the returned
    ``precision_above`` and ``coverage_above`` (the share of predictions at or above t) describe
    that set. When every prediction together reaches the target, t is the lowest confidence seen.
    When no t reaches it, t is the one whose set has the highest accuracy (the largest set among
    equals): the caller sees the target missed as ``precision_above < precision``.
    """
    confidence, correct = _top1(probs, labels)
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    # A candidate t takes every prediction with confidence >= t, ties included: the sets to
    # consider end at the last prediction of each run of equal confidences.
    ends = np.flatnonzero(np.append(confidence[1:] != confidence[:-1], True))
    counts = ends + 1
    accuracy = np.cumsum(correct)[ends] / counts
    reached = np.flatnonzero(accuracy >= precision)
    if reached.size:
        chosen = int(reached[-1])  # the lowest t, hence the largest set
    else:
        best = accuracy.max()
        chosen = int(np.flatnonzero(accuracy == best)[-1])
    return {
        "threshold": float(confidence[ends[chosen]]),
        "precision_above": float(accuracy[chosen]),
        "coverage_above": float(counts[chosen] / len(confidence)),
    }
