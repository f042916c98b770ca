"""Low-confidence predictions and the calibration and robustness sections of the model card.

The shipped model has no calibration, so these tests publish its copy with a ``calibration``
block (metadata.json is not checksummed, the export is unchanged) whose threshold falls in the
widest gap between the sample images' confidences: some images are above it, some below.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from fashion_classifier.artifacts import store
from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.inference.predictor import Predictor
from fashion_classifier.web.state import EXTENSION

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
ROBUSTNESS = {
    "clean": 0.93,
    "contrast": 0.91,
    "mirrored": 0.92,
    "noise": 0.9,
    "photo": 0.905,
    "rotated": 0.89,
    "scaled": 0.915,
    "shifted": 0.9,
}


def split_threshold(confidence: np.ndarray) -> float:
    """The midpoint of the widest gap between sorted confidences: never equal to one of them."""
    ordered = np.sort(confidence)
    i = int(np.argmax(np.diff(ordered)))
    return float((ordered[i] + ordered[i + 1]) / 2)


@pytest.fixture
def confidences(model_store, sample_images) -> np.ndarray:
    tflite = store.current_path(model_store) / store.TFLITE
    return Predictor(tflite).predict(sample_images[0].astype(np.float32) / 255).max(axis=1)


@pytest.fixture
def calibrated(model_store, confidences, make_app):
    """An app serving the copy with a calibration and a robustness block and a reliability diagram."""
    path = store.current_path(model_store)
    meta = store.load_metadata(path)
    threshold = split_threshold(confidences)
    meta["calibration"] = {
        "method": "temperature scaling",
        "temperature": 1.234,
        "validation_examples": 6000,
        "bins": 15,
        "ece_before": 0.0311,
        "ece_after": 0.0123,
        "precision_target": 0.97,
        "low_confidence_below": threshold,
        "precision_above": 0.9712,
        "coverage_above": 0.8634,
    }
    meta["robustness"] = {"seed": 2026, "examples": 10000, "accuracy": ROBUSTNESS}
    store.write_metadata(path, meta)
    Image.new("RGB", (40, 20), "white").save(path / "reliability_diagram.png")
    return make_app()


@pytest.fixture
def uncalibrated(model_store, make_app):
    """An app serving the tutorial's MLP, shipped next to the current version without calibration."""
    (mlp,) = (model_store / store.VERSIONS).glob("*-mlp-*")
    (model_store / store.CURRENT).write_text(mlp.name + "\n")
    return make_app()


def predict_all(client, sample_images) -> list[dict]:
    body = {"instances": sample_images[0].tolist()}
    response = client.post("/api/v1/predict", json=body)
    assert response.status_code == 200
    return response.get_json()["predictions"]


def upload(client, png, i: int) -> str:
    response = client.post("/", data={"file": (io.BytesIO(png(i)), f"{i}.png")}, headers=HTML)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_loaded_model_carries_its_threshold(calibrated, confidences):
    assert calibrated.extensions[EXTENSION].model.low_confidence_below == split_threshold(confidences)


def test_api_marks_predictions_below_the_threshold(calibrated, confidences, sample_images):
    results = predict_all(calibrated.test_client(), sample_images)
    threshold = split_threshold(confidences)
    flags = [r["low_confidence"] for r in results]
    assert flags == (confidences < threshold).tolist()
    assert any(flags) and not all(flags)  # the threshold splits the samples
    for result in results:
        assert result["low_confidence"] == (result["confidence"] < threshold)


def test_a_model_without_calibration_marks_nothing(uncalibrated, sample_images):
    client = uncalibrated.test_client()
    results = predict_all(client, sample_images)
    assert all("-mlp-" in r["model_version"] for r in results)
    assert [r["low_confidence"] for r in results] == [False] * len(results)


def test_api_model_info_has_the_calibration(calibrated):
    info = calibrated.test_client().get("/api/v1/model").get_json()
    assert info["calibration"]["temperature"] == 1.234 and info["robustness"]["accuracy"] == ROBUSTNESS


def test_api_model_info_of_a_model_without_calibration(uncalibrated):
    info = uncalibrated.test_client().get("/api/v1/model").get_json()
    assert info["calibration"] is None and info["robustness"] is None


def test_upload_page_says_not_sure_below_the_threshold(calibrated, confidences, png, sample_images):
    client = calibrated.test_client()
    threshold = split_threshold(confidences)
    unsure = int(np.flatnonzero(confidences < threshold)[0])
    html = upload(client, png, unsure)
    assert 'id="predicted-label"' not in html and 'id="low-confidence"' in html
    line = re.search(r'id="low-confidence">(.*?)</p>', html, re.S).group(1)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", line)).strip().replace("&#39;", "'")
    probs = calibrated.extensions[EXTENSION].model.predictor.predict(
        sample_images[0][unsure : unsure + 1].astype(np.float32) / 255
    )[0]
    top3 = np.argsort(-probs, kind="stable")[:3]
    expected = ", ".join(f"{CLASS_NAMES[k]} {probs[k] * 100:.1f} %" for k in top3)
    assert text == f"not sure — top 3: {expected}"
    assert f"{threshold * 100:.1f} %" in html and "97.1 %" in html  # the note names the threshold
    assert "<title>Not sure" in html


def test_upload_page_states_one_class_above_the_threshold(calibrated, confidences, png):
    client = calibrated.test_client()
    sure = int(np.flatnonzero(confidences > split_threshold(confidences))[0])
    html = upload(client, png, sure)
    assert 'id="predicted-label"' in html and "not sure" not in html and 'id="low-confidence"' not in html


def test_model_card_shows_calibration_and_robustness(calibrated, confidences):
    client = calibrated.test_client()
    html = client.get("/model").get_data(as_text=True)
    section = re.search(r'id="calibration".*?</section>', html, re.S).group(0)
    for element, value in (
        ("temperature", "1.234"),
        ("ece-before", "0.0311"),
        ("ece-after", "0.0123"),
        ("low-confidence-below", f"{split_threshold(confidences):.3f}"),
        ("coverage-above", "0.8634"),
    ):
        assert re.search(rf'id="{element}">\s*{re.escape(value)}', section), element
    assert "0.9712" in section and "6,000" in section and "temperature scaling" in section
    assert 'src="/model/reliability_diagram.png"' in section
    image = client.get("/model/reliability_diagram.png")
    assert image.status_code == 200 and image.mimetype == "image/png"
    table = re.search(r'id="robustness-table".*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr><td>(\w+).*?<td class=\"num\">([0-9.]+)</td>", table, re.S)
    # The benchmark's order, not metadata.json's sorted keys.
    assert rows == [
        (name, f"{ROBUSTNESS[name]:.4f}")
        for name in ("clean", "mirrored", "shifted", "scaled", "rotated", "contrast", "noise", "photo")
    ]
    assert "10,000 test images per variant, seed 2026" in html


def test_model_card_without_calibration_or_robustness(uncalibrated):
    client = uncalibrated.test_client()
    html = client.get("/model").get_data(as_text=True)
    assert 'id="per-class"' in html  # the card itself is there
    assert 'id="calibration"' not in html and 'id="robustness"' not in html
    assert "reliability_diagram" not in html
    assert client.get("/model/reliability_diagram.png").status_code == 404  # the shipped model has none
