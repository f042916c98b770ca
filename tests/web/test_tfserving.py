"""TF-Serving style /v1 (KServe V1): instances, inputs, b64 images, errors."""

from __future__ import annotations

import base64

import numpy as np
import pytest

PREDICT = "/v1/models/fashion:predict"


def probs_of(state, images):
    return state.model.predictor.predict(np.asarray(images, dtype=np.float32) / 255)


def test_model_listing_and_status(client):
    assert client.get("/v1/models").get_json() == {"models": ["fashion"]}
    assert client.get("/v1/models/fashion").get_json() == {"name": "fashion", "ready": True}
    assert client.get("/v1/models/shoes").status_code == 404


@pytest.mark.parametrize("form", ["instances", "inputs", "inputs-named", "instances-named", "inputs-single"])
def test_row_and_columnar_formats(client, state, sample_images, form):
    x = sample_images[0][:2] / 255.0
    body = {
        "instances": {"instances": x.tolist()},
        "inputs": {"inputs": x.tolist()},
        "inputs-named": {"inputs": {"pixels": x.tolist()}},
        "instances-named": {"instances": [{"pixels": row} for row in x.tolist()]},
        "inputs-single": {"inputs": x[0].tolist()},
    }[form]
    response = client.post(PREDICT, json=body)
    assert response.status_code == 200, response.get_json()
    predictions = np.asarray(response.get_json()["predictions"])
    n = 1 if form == "inputs-single" else 2
    assert predictions.shape == (n, 10)
    assert np.abs(predictions - probs_of(state, sample_images[0][:n])).max() <= 1e-6


def test_b64_images(client, state, png):
    body = {"instances": [{"b64": base64.b64encode(png(i)).decode()} for i in range(3)]}
    predictions = np.asarray(client.post(PREDICT, json=body).get_json()["predictions"])
    assert predictions.shape == (3, 10) and np.allclose(predictions.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"instances": [], "inputs": []}, 400),
        ({"instances": []}, 400),
        ({"instances": [[1, 2]]}, 400),
        ({"inputs": {"image": []}}, 400),
        ({"instances": [{"b64": 5}]}, 400),
        ({"instances": [{"b64": "AAAA"}]}, 415),
    ],
)
def test_errors(client, body, status):
    response = client.post(PREDICT, json=body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]


def test_unknown_model_and_non_json(client):
    response = client.post("/v1/models/shoes:predict", json={"instances": []})
    assert response.status_code == 404 and "shoes" in response.get_json()["error"]
    assert client.post(PREDICT, data="x", content_type="text/plain").status_code == 415
    assert client.post(PREDICT, data="{", content_type="application/json").status_code == 400
