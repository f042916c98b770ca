"""Open Inference Protocol (KServe V2) over the Flask test client: shapes, types, errors."""

from __future__ import annotations

import base64
import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from fashion_classifier.config import CLASS_NAMES

INFER = "/v2/models/fashion/infer"


def infer(client, body, status=200):
    response = client.post(INFER, json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def output(body, name):
    return next(o for o in body["outputs"] if o["name"] == name)


def test_health_and_metadata(client, state):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    server = client.get("/v2").get_json()
    assert server["name"] == "fashion-classifier" and "binary_tensor_data" in server["extensions"]
    assert isinstance(server["version"], str)
    meta = client.get("/v2/models/fashion").get_json()
    assert meta["name"] == "fashion" and meta["versions"] == [state.model.version]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "class", "label", "prediction_id"]
    assert client.get(f"/v2/models/fashion/versions/{state.model.version}").status_code == 200
    ready = client.get("/v2/models/fashion/ready")
    assert ready.status_code == 200 and ready.get_json() == {"name": "fashion", "ready": True}
    assert client.get("/v2/models/fashion/versions/0/ready").status_code == 400


@pytest.mark.parametrize("path", ["/v2/models/shoes", "/v2/models/shoes/ready", "/v2/models/fashion/versions/0"])
def test_unknown_model_or_version_is_404(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.get_json()["error"]
    response = client.post("/v2/models/shoes/infer", json={"inputs": []})
    assert response.status_code == 404 and "shoes" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("datatype", "shape", "nested"),
    [
        ("FP32", [3, 28, 28], False),
        ("FP32", [3, 28, 28], True),
        ("FP32", [3, 784], False),
        ("UINT8", [3, 784], False),
        ("UINT8", [3, 28, 28], True),
    ],
)
def test_numeric_tensors(client, state, sample_images, datatype, shape, nested):
    x = sample_images[0][:3]
    values = x.astype(np.float32) / 255 if datatype == "FP32" else x
    data = values.reshape(shape).tolist() if nested else values.reshape(-1).tolist()
    body = infer(
        client,
        {"id": "req-1", "inputs": [{"name": "pixels", "shape": shape, "datatype": datatype, "data": data}]},
    )
    assert body["model_name"] == "fashion" and body["model_version"] == state.model.version and body["id"] == "req-1"
    probs = output(body, "probabilities")
    assert probs["datatype"] == "FP32" and probs["shape"] == [3, 10]
    expected = state.model.predictor.predict(x.astype(np.float32) / 255)
    assert np.abs(np.asarray(probs["data"]).reshape(3, 10) - expected).max() <= 1e-6
    assert output(body, "class")["data"] == expected.argmax(1).tolist()
    assert output(body, "label")["data"] == [CLASS_NAMES[k] for k in expected.argmax(1)]
    assert len(set(output(body, "prediction_id")["data"])) == 3


def test_bytes_tensor_of_base64_images(client, state, png, sample_images):
    images = [base64.b64encode(png(i)).decode() for i in range(2)]
    body = infer(
        client,
        {
            "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": images}],
            "outputs": [{"name": "label"}],
        },
    )
    assert [o["name"] for o in body["outputs"]] == ["label"] and "id" not in body
    expected = state.model.predictor.predict(sample_images[0][:2].astype(np.float32) / 255).argmax(1)
    assert output(body, "label")["data"] == [CLASS_NAMES[k] for k in expected]
    body = infer(
        client,
        {"inputs": [{"name": "image", "shape": [2, 1], "datatype": "BYTES", "data": [[images[0]], [images[1]]]}]},
    )
    assert output(body, "class")["data"] == expected.tolist()


def binary_request(header: dict, blobs: list[bytes]) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def split_binary(response):
    n = int(response.headers["Inference-Header-Content-Length"])
    return json.loads(response.data[:n]), response.data[n:]


def test_binary_tensor_extension_in_and_out(client, state, sample_images, png):
    x = sample_images[0][:4]
    raw = x.astype(np.uint8).tobytes()
    body, headers = binary_request(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": [4, 28, 28],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
        },
        [raw],
    )
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    head, tail = split_binary(response)
    probs_meta, label_meta = head["outputs"]
    assert probs_meta["parameters"]["binary_data_size"] == len(tail) == 4 * 10 * 4 and "data" not in probs_meta
    probs = np.frombuffer(tail, dtype="<f4").reshape(4, 10)
    assert np.abs(probs - state.model.predictor.predict(x.astype(np.float32) / 255)).max() <= 1e-6
    assert label_meta["data"] == [CLASS_NAMES[k] for k in probs.argmax(1)]


def test_binary_bytes_elements_and_binary_data_output(client, png):
    images = [png(0), png(1)]
    raw = b"".join(struct.pack("<I", len(b)) + b for b in images)
    body, headers = binary_request(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [
                {
                    "name": "image",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
        },
        [raw],
    )
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 200, response.data[:200]
    head, tail = split_binary(response)
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sum(sizes) == len(tail)
    labels_raw = tail[sizes[0] + sizes[1] : sizes[0] + sizes[1] + sizes[2]]
    n = struct.unpack_from("<I", labels_raw)[0]
    assert labels_raw[4 : 4 + n].decode() in CLASS_NAMES


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [{"name": "p", "shape": [1, 28, 27], "datatype": "FP32", "data": [0.0] * 756}]}, "shape"),
        ({"inputs": [{"name": "p", "shape": [1, 784], "datatype": "FP64", "data": [0.0] * 784}]}, "datatype"),
        (
            {"inputs": [{"name": "p", "shape": [2, 784], "datatype": "FP32", "data": [0.0] * 784}]},
            "needs 1568",
        ),
        ({"inputs": [{"name": "p", "shape": [1, 784], "datatype": "FP32", "data": [2.0] * 784}]}, "UINT8"),
        (
            {"inputs": [{"name": "p", "shape": [1, 784], "datatype": "UINT8", "data": [256] * 784}]},
            "0 to 255",
        ),
        (
            {"inputs": [{"name": "p", "shape": [1, 784], "datatype": "UINT8", "data": [0.5] * 784}]},
            "integers",
        ),
        ({"inputs": [{"name": "p", "shape": [1, 784], "datatype": "FP32", "data": ["a"] * 784}]}, "numbers"),
        ({"inputs": [{"name": "p", "shape": [1, 784], "datatype": "FP32", "data": 5}]}, "list"),
        ({"inputs": [{"name": "p", "shape": [1, 784], "datatype": "FP32"}]}, "no 'data'"),
        ({"inputs": [{"name": "p", "shape": "1,784", "datatype": "FP32", "data": []}]}, "shape"),
        ({"inputs": [{"name": "p", "shape": [0, 784], "datatype": "FP32", "data": []}]}, "no images"),
        ({"inputs": []}, "exactly one"),
        ({"inputs": [1]}, "object"),
        ({"inputs": [{"shape": [1, 784], "datatype": "FP32", "data": [0] * 784}]}, "name"),
        ({}, "exactly one"),
        ({"id": 5, "inputs": []}, "'id'"),
        ({"inputs": [{"name": "i", "shape": [1], "datatype": "BYTES", "data": ["@@@"]}]}, "base64"),
        (
            {"inputs": [{"name": "i", "shape": [1], "datatype": "BYTES", "data": ["aGVsbG8="]}]},
            "unsupported image",
        ),
        ({"inputs": [{"name": "i", "shape": [2], "datatype": "BYTES", "data": ["aGVsbG8="]}]}, "needs 2"),
        ({"inputs": [{"name": "i", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}, "[N, 1]"),
        (
            {
                "inputs": [{"name": "p", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}],
                "outputs": [{"name": "logits"}],
            },
            "unknown output",
        ),
        (
            {
                "inputs": [{"name": "p", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}],
                "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}],
            },
            "binary_data",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "p",
                        "shape": [1, 784],
                        "datatype": "UINT8",
                        "data": [0] * 784,
                        "parameters": {"binary_data_size": 784},
                    }
                ]
            },
            "binary_data_size",
        ),
    ],
)
def test_protocol_errors_are_400_with_error_json(client, body, fragment):
    response = client.post(INFER, json=body)
    assert response.status_code in (400, 415, 422), response.get_json()
    assert fragment in response.get_json()["error"]


# A binary UINT8 [1, 784] input that claims (and sends) only 10 bytes.
_TEN_BYTES_INPUT = {
    "name": "p",
    "shape": [1, 784],
    "datatype": "UINT8",
    "parameters": {"binary_data_size": 10},
}
_TEN_BYTES_HEADER = json.dumps({"inputs": [_TEN_BYTES_INPUT]}).encode()


def test_malformed_bodies(client):
    for data, headers in [
        (b"{not json", {}),
        (b"[]", {}),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "99"}),
        (_TEN_BYTES_HEADER + bytes(10), {"Inference-Header-Content-Length": str(len(_TEN_BYTES_HEADER))}),
    ]:
        response = client.post(INFER, data=data, headers=headers, content_type="application/json")
        assert response.status_code == 400, (data, response.get_json())
        assert response.get_json()["error"]


def test_version_specific_infer(client, state):
    body = {"inputs": [{"name": "p", "shape": [1, 784], "datatype": "UINT8", "data": [0] * 784}]}
    ok = client.post(f"/v2/models/fashion/versions/{state.model.version}/infer", json=body)
    assert ok.status_code == 200
    assert client.post("/v2/models/fashion/versions/old/infer", json=body).status_code == 404


def test_the_images_of_one_bytes_tensor_share_one_decode_budget(client):
    # Each 3000×3000 image alone is within the per-image limit; two of them exceed the request's.
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG", compress_level=9)
    image = base64.b64encode(buf.getvalue()).decode()
    one = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]}
    assert infer(client, one)["outputs"]
    two = {"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": [image, image]}]}
    error = infer(client, two, status=422)["error"]
    assert "element 1" in error and "in all" in error
