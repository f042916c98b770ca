"""POST /api/v1/predict: multipart files, raw image bodies and JSON instances."""

from __future__ import annotations

import base64
import io
import uuid

import numpy as np
import pytest
from urllib3 import encode_multipart_formdata

from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.web.inputs import MAX_FILENAME, capped_filename


def multipart(*files, field="file"):
    """Request kwargs for a multipart upload encoded as ``requests`` does it (a new random boundary each time).

    Werkzeug's test-client encoder is not used: for an empty file it omits the CRLF that must
    precede the next boundary, which no browser or HTTP library does.
    """
    body, content_type = encode_multipart_formdata([(field, (name, data)) for data, name in files])
    return {"data": body, "content_type": content_type}


def assert_result(result, model_version):
    assert set(result) >= {
        "prediction_id",
        "class",
        "label",
        "confidence",
        "probabilities",
        "top3",
        "model_version",
    }
    assert uuid.UUID(result["prediction_id"]).version == 1
    assert result["label"] == CLASS_NAMES[result["class"]]
    assert list(result["probabilities"]) == list(CLASS_NAMES)
    assert abs(sum(result["probabilities"].values()) - 1.0) < 1e-4
    assert result["confidence"] == result["probabilities"][result["label"]] == max(result["probabilities"].values())
    assert [t["label"] for t in result["top3"]][0] == result["label"]
    assert [t["probability"] for t in result["top3"]] == sorted(
        (t["probability"] for t in result["top3"]), reverse=True
    )
    assert result["model_version"] == model_version


def test_one_png_upload(client, state, png, sample_images):
    response = client.post("/api/v1/predict", **multipart((png(0), "boot.png")))
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["model_version"] == state.model.version
    (result,) = body["predictions"]
    assert_result(result, state.model.version)
    assert result["filename"] == "boot.png"
    expected = state.model.predictor.predict(sample_images[0][:1].astype(np.float32) / 255)[0]
    assert np.allclose([result["probabilities"][n] for n in CLASS_NAMES], expected, atol=1e-6)


def test_many_files_in_one_request_keep_their_order(client, state, png, sample_images):
    files = [(png(i), f"img{i}.png") for i in range(6)]
    data = {
        "file": [(io.BytesIO(d), n) for d, n in files[:4]],
        "files": [(io.BytesIO(d), n) for d, n in files[4:]],
    }
    body = client.post("/api/v1/predict", data=data).get_json()
    assert [r["filename"] for r in body["predictions"]] == [n for _, n in files]
    expected = state.model.predictor.predict(sample_images[0][:6].astype(np.float32) / 255).argmax(1)
    assert [r["class"] for r in body["predictions"]] == expected.tolist()
    assert len({r["prediction_id"] for r in body["predictions"]}) == 6


def test_raw_image_body(client, png, state):
    response = client.post("/api/v1/predict", data=png(1), content_type="image/png")
    assert response.status_code == 200
    assert_result(response.get_json()["predictions"][0], state.model.version)


@pytest.mark.parametrize("form", ["floats", "bytes", "flat", "b64-object", "b64-string", "data-url"])
def test_json_instances(client, state, png, sample_images, form):
    x = sample_images[0][2]
    instance = {
        "floats": (x / 255.0).tolist(),
        "bytes": x.tolist(),
        "flat": x.reshape(-1).tolist(),
        "b64-object": {"b64": base64.b64encode(png(2)).decode()},
        "b64-string": base64.b64encode(png(2)).decode(),
        "data-url": "data:image/png;base64," + base64.b64encode(png(2)).decode(),
    }[form]
    response = client.post("/api/v1/predict", json={"instances": [instance, instance]})
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["predictions"]
    assert len(results) == 2
    expected = state.model.predictor.predict(x[None].astype(np.float32) / 255)[0]
    got = [results[0]["probabilities"][n] for n in CLASS_NAMES]
    assert np.allclose(got, expected, atol=1e-6)


def test_mixed_json_instances(client, png, sample_images):
    x = sample_images[0][3]
    instances = [x.tolist(), base64.b64encode(png(3)).decode(), {"b64": base64.b64encode(png(4)).decode()}]
    results = client.post("/api/v1/predict", json={"instances": instances}).get_json()["predictions"]
    assert results[0]["probabilities"] == results[1]["probabilities"]
    assert len(results) == 3


def bad(client, status, **kwargs):
    response = client.post("/api/v1/predict", **kwargs)
    assert response.status_code == status, response.data[:300]
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"]
    return body["error"]


def test_bad_uploads_get_json_errors(client, png):
    assert "field named 'file'" in bad(client, 400, data={"other": (io.BytesIO(png()), "x.png")})
    assert "no image" in bad(client, 400, **multipart((b"", "")))  # a browser's empty file input
    assert "empty" in bad(client, 400, **multipart((b"", "empty.png")))
    assert "unsupported" in bad(client, 415, **multipart((b"plain text", "notes.txt")))
    assert "decode" in bad(client, 422, **multipart((png()[:40], "cut.png")))
    assert '"cut.png"' in bad(client, 422, **multipart((png()[:40], "cut.png")))
    assert bad(client, 415, data="x=1", content_type="application/x-www-form-urlencoded")
    assert bad(client, 415, data=b"\x00\x01", content_type="image/png")


def test_multipart_edge_cases(client, png):
    empty_input_and_a_file, content_type = encode_multipart_formdata(
        [("note", "hello"), ("file", ("", b"")), ("file", ("a.png", png(0)))]
    )
    response = client.post("/api/v1/predict", data=empty_input_and_a_file, content_type=content_type)
    assert response.status_code == 200, response.data[:300]
    assert len(response.get_json()["predictions"]) == 1

    body, content_type = encode_multipart_formdata([("file", ("a.png", png(0)))])
    assert "malformed multipart" in bad(client, 400, data=body[:-20], content_type=content_type)
    assert "no boundary" in bad(client, 400, data=body, content_type="multipart/form-data")
    assert "malformed multipart" in bad(client, 400, data=b"garbage", content_type=content_type)
    assert bad(client, 415, data=body, content_type=content_type.replace("form-data", "mixed"))


def test_random_boundaries_parse_alike(client, png):
    """Real clients send a new boundary each request; every one must give the same answer."""
    answers = {
        client.post("/api/v1/predict", **multipart((png(0), "a.png"))).get_json()["predictions"][0]["label"]
        for _ in range(20)
    }
    assert len(answers) == 1


def test_long_filenames_are_accepted_and_kept_to_255_characters_with_their_extension(client, png):
    name = "n" * 10_000 + ".png"
    response = client.post("/api/v1/predict", **multipart((png(0), name)))
    assert response.status_code == 200, response.data[:300]
    kept = response.get_json()["predictions"][0]["filename"]
    assert len(kept) == MAX_FILENAME and kept == "n" * (MAX_FILENAME - 5) + "….png"
    assert capped_filename("a" * 300) == "a" * (MAX_FILENAME - 1) + "…"  # no extension to keep
    assert capped_filename("x" * 255) == "x" * 255 and capped_filename("") is None
    body, content_type = encode_multipart_formdata([("file", ("x" * 100_000 + ".png", png(0)))])
    assert "header too large" in bad(client, 413, data=body, content_type=content_type)


def test_too_many_parts_is_413(make_app, png):
    client = make_app(max_batch=2).test_client()
    body, content_type = encode_multipart_formdata([(f"field{i}", "x") for i in range(100)])
    assert "too many parts" in bad(client, 413, data=body, content_type=content_type)


def test_one_bad_file_names_itself(client, png):
    error = bad(client, 422, **multipart((png(), "good.png"), (b"\x89PNG\r\n\x1a\n????", "../../etc/passwd")))
    assert "../../etc/passwd" in error


def test_malformed_json(client):
    assert "malformed JSON" in bad(client, 400, data=b'{"instances": [', content_type="application/json")
    assert bad(client, 400, json=[1, 2, 3])
    assert bad(client, 400, json={"instances": "nope"})
    assert bad(client, 400, json={"instances": []})
    assert bad(client, 400, json={"instances": [[[0.5] * 27] * 28]})
    assert bad(client, 400, json={"instances": [[[float("nan")] * 28] * 28]}) is not None
    assert bad(client, 400, json={"instances": [{"b64": "!!!not base64!!!"}]})
    assert bad(client, 400, json={"instances": [{"pixels": 1, "other": 2}]})
    assert bad(client, 400, json={"instances": [42]})
    assert bad(client, 400, json={"instances": [[[-1] * 28] * 28]})


def test_oversize_upload_is_413(make_app, png):
    client = make_app(max_upload_bytes=2000).test_client()
    error = bad(client, 413, **multipart((b"\x89PNG\r\n\x1a\n" + bytes(5000), "big.png")))
    assert "2,000 bytes" in error


def test_too_many_images_is_413(make_app, png):
    client = make_app(max_batch=3).test_client()
    assert "limit is 3" in bad(client, 413, **multipart(*[(png(), "a.png")] * 4))
    assert bad(client, 413, json={"instances": [[[0] * 28] * 28] * 4})


def test_decompression_bomb_is_422(client):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    assert "decompression bomb" in bad(client, 422, **multipart((bomb, "bomb.png")))


def test_wrong_method_and_unknown_path(client):
    response = client.get("/api/v1/predict")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]
    assert response.get_json()["error"]
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.get_json()["error"]


def test_not_ready_is_503(tmp_path, make_app, png):
    client = make_app(model_dir=tmp_path / "no-store").test_client()
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 400
    response = client.post("/api/v1/predict", **multipart((png(), "a.png")))
    assert response.status_code == 503 and "no model" in response.get_json()["error"]
