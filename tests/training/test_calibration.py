"""Calibration on synthetic data whose right answers are known: temperature, ECE, threshold."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fashion_classifier.training.calibration import (
    ECE_BINS,
    PRECISION_TARGET,
    expected_calibration_error,
    fit_temperature,
    low_confidence_threshold,
    nll,
    reliability_bins,
    softmax,
)


def sample_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row drawn from the row's distribution: the probabilities are then calibrated."""
    cumulative = probs.cumsum(axis=1)
    draws = rng.random((len(probs), 1))
    return np.minimum((draws > cumulative).sum(axis=1), probs.shape[1] - 1)


@pytest.fixture(scope="module")
def calibrated():
    """Logits whose softmax is the true label distribution, and labels drawn from it."""
    rng = np.random.default_rng(7)
    logits = rng.normal(0.0, 3.0, size=(20_000, 10))
    return logits, sample_labels(softmax(logits), rng)


def test_softmax_rows_are_distributions():
    probs = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
    assert np.allclose(probs.sum(axis=1), 1.0) and np.isfinite(probs).all()
    assert probs[0, 0] == pytest.approx(1.0) and probs[1] == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_recovers_a_known_temperature(calibrated, true_t):
    logits, labels = calibrated
    # Logits scaled by T are calibrated once divided by T again.
    found = fit_temperature(logits * true_t, labels)
    assert found == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(logits * true_t, labels) == found  # deterministic


def test_temperature_minimises_the_nll(calibrated):
    logits, labels = calibrated
    scaled = logits * 1.8
    found = fit_temperature(scaled, labels)
    best = nll(scaled, labels, found)
    assert best < nll(scaled, labels, 1.0)
    assert best <= nll(scaled, labels, found * 1.05) and best <= nll(scaled, labels, found / 1.05)


def test_ece_of_calibrated_data_is_near_zero(calibrated):
    logits, labels = calibrated
    assert expected_calibration_error(softmax(logits), labels) < 0.015


def test_ece_of_overconfident_data_is_large_and_scaling_fixes_it(calibrated):
    logits, labels = calibrated
    overconfident = logits * 3.0
    before = expected_calibration_error(softmax(overconfident), labels)
    assert before > 0.1
    after = expected_calibration_error(softmax(overconfident, fit_temperature(overconfident, labels)), labels)
    assert after < 0.015


def test_ece_of_a_hand_made_case():
    # Two predictions at 0.9 (one right) and two at 0.6 (both right): |0.5-0.9|/2 + |1-0.6|/2 = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)


def test_reliability_bins(calibrated):
    logits, labels = calibrated
    rows = reliability_bins(softmax(logits), labels)
    assert len(rows) == ECE_BINS and sum(row["count"] for row in rows) == len(labels)
    assert rows[0]["lower"] == 0.0 and rows[-1]["upper"] == 1.0
    for row in rows:
        assert row["upper"] - row["lower"] == pytest.approx(1 / ECE_BINS)
        if row["count"]:
            assert row["lower"] < row["confidence"] <= row["upper"]
            assert 0.0 <= row["accuracy"] <= 1.0
        else:
            assert row["confidence"] is None and row["accuracy"] is None
    # Ten classes: no top-1 probability is below 0.1, so the first bin is empty.
    assert rows[0]["count"] == 0


def test_threshold_is_the_lowest_confidence_that_reaches_the_precision():
    # Confidences from high to low; the prediction at 0.5 is the first wrong one.
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.5, 0.45, 0.4])
    right = np.array([1, 1, 1, 1, 1, 0, 1, 0], dtype=bool)
    probs = np.stack([confidence, (1 - confidence) / 2, (1 - confidence) / 2], axis=1)  # class 0 on top
    labels = np.where(right, 0, 1)
    # >= 0.7: 5/5; >= 0.5: 5/6; >= 0.45: 6/7 = 0.857; >= 0.4: 6/8.
    assert low_confidence_threshold(probs, labels, precision=0.97) == {
        "threshold": 0.7,
        "precision_above": 1.0,
        "coverage_above": 5 / 8,
    }
    found = low_confidence_threshold(probs, labels, precision=0.85)
    assert found == {"threshold": 0.45, "precision_above": pytest.approx(6 / 7), "coverage_above": 7 / 8}
    # Everything together reaches the target: the lowest confidence, everything covered.
    assert low_confidence_threshold(probs, labels, precision=0.75)["coverage_above"] == 1.0


def test_threshold_takes_ties_together():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 0])
    # The two predictions at 0.8 go in or out together: >= 0.8 is 2/3, not 2/2.
    assert low_confidence_threshold(probs, labels, precision=0.97)["threshold"] == 0.9
    assert low_confidence_threshold(probs, labels, precision=0.6)["threshold"] == 0.6


def test_threshold_when_no_set_reaches_the_precision():
    # The most confident prediction is wrong: no set reaches 0.97; the most accurate one wins.
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    labels = np.array([1, 0, 0, 1])
    found = low_confidence_threshold(probs, labels, precision=PRECISION_TARGET)
    assert found == {"threshold": 0.8, "precision_above": pytest.approx(2 / 3), "coverage_above": 0.75}
    assert found["precision_above"] < PRECISION_TARGET  # how the caller sees the target missed


def test_threshold_on_calibrated_data(calibrated):
    logits, labels = calibrated
    probs = softmax(logits)
    found = low_confidence_threshold(probs, labels)
    above = probs.max(axis=1) >= found["threshold"]
    assert found["coverage_above"] == pytest.approx(above.mean())
    accuracy_above = (probs.argmax(axis=1) == labels)[above].mean()
    assert found["precision_above"] == pytest.approx(accuracy_above) and accuracy_above >= PRECISION_TARGET
    # Calibrated: a 0.97 precision needs confidences of roughly 0.97 and more near the threshold.
    assert 0.8 < found["threshold"] < 0.99


@pytest.mark.parametrize(
    ("probs", "labels"),
    [(np.zeros((0, 10)), np.zeros(0)), (np.ones((3, 10)) / 10, np.zeros(2)), (np.ones((2, 3)) / 3, np.array([0, 3]))],
)
def test_bad_shapes_are_refused(probs, labels):
    with pytest.raises(ValueError):
        expected_calibration_error(probs, labels)


def test_reliability_diagram_is_a_png(calibrated, tmp_path):
    from fashion_classifier.training.report import plot_reliability

    logits, labels = calibrated
    overconfident = logits * 2.0
    before = reliability_bins(softmax(overconfident), labels)
    after = reliability_bins(softmax(overconfident, fit_temperature(overconfident, labels)), labels)
    path = tmp_path / "reliability_diagram.png"
    plot_reliability(before, after, path, "synthetic")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height > 200
