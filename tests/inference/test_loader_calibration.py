"""The low-confidence threshold a loaded model takes from metadata.json's calibration block."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashion_classifier.artifacts import store
from fashion_classifier.inference.loader import load_version
from fashion_classifier.inference.predictor import ModelLoadError


def with_calibration(model_store, calibration) -> Path:
    path = store.current_path(model_store)
    meta = store.load_metadata(path)
    meta["calibration"] = calibration
    store.write_metadata(path, meta)
    return path


def test_a_model_without_calibration_has_no_threshold(default_version_dir):
    (mlp,) = default_version_dir.parent.glob("*-mlp-*")  # the tutorial's MLP, shipped uncalibrated
    assert load_version(mlp).low_confidence_below is None
    shipped = store.load_metadata(default_version_dir)["calibration"]["low_confidence_below"]
    assert 0.5 < shipped < 1.0  # the default is calibrated, with a threshold that marks something
    assert load_version(default_version_dir).low_confidence_below == pytest.approx(shipped)


@pytest.mark.parametrize(("value", "expected"), [(0.62, 0.62), (1, 1.0), (0, 0.0), (None, None)])
def test_the_threshold_is_read(model_store, value, expected):
    path = with_calibration(model_store, {"method": "temperature scaling", "low_confidence_below": value})
    assert load_version(path).low_confidence_below == expected


@pytest.mark.parametrize(
    "calibration",
    [
        {"low_confidence_below": 1.5},
        {"low_confidence_below": -0.1},
        {"low_confidence_below": "high"},
        {"low_confidence_below": True},
        {"low_confidence_below": float("nan")},
        [0.6],
    ],
)
def test_a_threshold_that_is_no_probability_refuses_the_version(model_store, calibration):
    path = with_calibration(model_store, calibration)
    with pytest.raises(ModelLoadError, match="calibration"):
        load_version(path)
