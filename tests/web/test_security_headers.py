"""Security headers: every HTML page forbids script and framing; JSON answers are not sniffed."""

from __future__ import annotations

import io

import pytest

from fashion_classifier.web.security_headers import CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", ["/", "/model", "/no-such-page"])
def test_html_pages_carry_the_policy(client, path):
    response = client.get(path, headers={"Accept": "text/html"})
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'none'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_result_page_has_the_policy_and_no_script(client, png):
    response = client.post("/", data={"file": (io.BytesIO(png(0)), "boot.png")}, content_type="multipart/form-data")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert b"<script" not in response.data


def test_json_answers_are_not_sniffed_and_carry_no_page_policy(client):
    response = client.get("/api/v1/model")
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in response.headers


def test_prediction_answers_from_the_fast_path_are_not_sniffed(client, sample_images):
    body = {
        "inputs": [
            {"name": "pixels", "shape": [1, 784], "datatype": "UINT8", "data": sample_images[0][0].ravel().tolist()}
        ]
    }
    response = client.post("/v2/models/fashion/infer", json=body)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
