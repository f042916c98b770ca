"""A stock Triton HTTP client (tritonclient) talks to /v2 unchanged, binary extension included."""

from __future__ import annotations

import base64
import threading

import numpy as np
import pytest
import tritonclient.http as httpclient  # the [test] extra
from tritonclient.utils import InferenceServerException
from werkzeug.serving import make_server

from fashion_classifier.config import CLASS_NAMES


@pytest.fixture
def triton(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.server_port}")
    try:
        yield client
    finally:
        client.close()
        server.shutdown()
        thread.join(timeout=5)


def test_health_and_metadata(triton, state):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("fashion")
    assert not triton.is_model_ready("shoes")
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    meta = triton.get_model_metadata("fashion")
    assert meta["versions"] == [state.model.version] and meta["inputs"][0]["name"] == "pixels"


@pytest.mark.parametrize("binary", [True, False])
def test_fp32_infer_like_any_triton_model(triton, state, sample_images, binary):
    x = sample_images[0][:5].astype(np.float32) / 255
    tensor = httpclient.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        httpclient.InferRequestedOutput("label", binary_data=binary),
    ]
    result = triton.infer("fashion", [tensor], outputs=outputs, request_id="abc")
    probs = result.as_numpy("probabilities")
    expected = state.model.predictor.predict(x)
    assert probs.shape == (5, 10) and np.abs(probs - expected).max() <= 1e-6
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    assert labels == [CLASS_NAMES[k] for k in expected.argmax(1)]
    response = result.get_response()
    assert response["model_name"] == "fashion" and response["id"] == "abc"


def test_uint8_and_default_outputs(triton, state, sample_images):
    x = sample_images[0][:3].reshape(3, 784)
    tensor = httpclient.InferInput("pixels", [3, 784], "UINT8")
    tensor.set_data_from_numpy(x)
    result = triton.infer("fashion", [tensor])
    assert (
        result.as_numpy("class").tolist()
        == state.model.predictor.predict(sample_images[0][:3].astype(np.float32) / 255).argmax(1).tolist()
    )
    assert len(result.as_numpy("prediction_id")) == 3


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_images(triton, png, state, sample_images, binary):
    blobs = [png(0), png(1)]
    if not binary:  # JSON BYTES elements are base64 strings
        blobs = [base64.b64encode(b) for b in blobs]
    tensor = httpclient.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=np.object_), binary_data=binary)
    result = triton.infer("fashion", [tensor], outputs=[httpclient.InferRequestedOutput("class")])
    expected = state.model.predictor.predict(sample_images[0][:2].astype(np.float32) / 255).argmax(1)
    assert result.as_numpy("class").tolist() == expected.tolist()


def test_errors_surface_as_client_exceptions(triton):
    tensor = httpclient.InferInput("pixels", [1, 28, 27], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 28, 27), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        triton.infer("fashion", [tensor])
    with pytest.raises(InferenceServerException, match="not found"):
        triton.get_model_metadata("shoes")
