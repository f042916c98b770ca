"""``inference.GRPCInferenceService`` through a stock Triton gRPC client (tritonclient): the
protocol's methods, raw and typed contents, the REST input rules, and errors as gRPC codes."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from fashion_classifier.config import CLASS_NAMES
from oip_grpc.conftest import grpc_target


def _input(array: np.ndarray, datatype: str, name: str = "pixels") -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _rest_probabilities(server, pixels: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {"name": "pixels", "shape": list(pixels.shape), "datatype": "UINT8", "data": pixels.ravel().tolist()}
        ],
        "outputs": [{"name": "probabilities"}],
    }
    answer = requests.post(f"{server.base_url}/v2/models/fashion/infer", json=body, timeout=10)
    answer.raise_for_status()
    out = answer.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def _refused(call, code: str) -> str:
    """The message of the error ``call()`` ends with, after checking its code (tritonclient's
    calls raise InferenceServerException; its raw stub, grpc.RpcError)."""
    with pytest.raises((InferenceServerException, grpc.RpcError)) as caught:
        call()
    error = caught.value
    if isinstance(error, grpc.RpcError):
        assert error.code() == getattr(grpc.StatusCode, code), error
        return error.details()
    assert error.status() == f"StatusCode.{code}", error
    return error.message()


def test_health_and_metadata(triton, store_copy):
    current = (store_copy / "CURRENT").read_text().strip()
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("fashion") and triton.is_model_ready("fashion", current)
    assert not triton.is_model_ready("fashion", "no-such-version")
    assert "not found" in _refused(lambda: triton.is_model_ready("shoes"), "NOT_FOUND")
    server = triton.get_server_metadata()
    assert server.name == "fashion-classifier" and server.version
    meta = triton.get_model_metadata("fashion")
    assert list(meta.versions) == [current] and meta.platform == "tflite"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("pixels", "FP32", [-1, 28, 28])]
    assert [t.name for t in meta.outputs] == ["probabilities", "class", "label", "prediction_id"]
    _refused(lambda: triton.get_model_metadata("fashion", "no-such-version"), "NOT_FOUND")


@pytest.mark.parametrize("datatype", ["UINT8", "FP32"])
def test_raw_infer_answers_as_rest_does(triton, server, images, datatype):
    pixels, labels = images
    data = pixels if datatype == "UINT8" else pixels.astype(np.float32) / 255
    result = triton.infer("fashion", [_input(data, datatype)], request_id="r-1")
    probs = result.as_numpy("probabilities")
    assert probs.shape == (8, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(probs, _rest_probabilities(server, pixels), rtol=1e-5, atol=1e-6)
    classes = result.as_numpy("class")
    assert classes.dtype == np.int64 and (classes == probs.argmax(axis=1)).all()
    assert (classes == labels).mean() >= 0.75  # the shipped model reads the official images
    assert [s.decode() for s in result.as_numpy("label")] == [CLASS_NAMES[k] for k in classes]
    assert len({s.decode() for s in result.as_numpy("prediction_id")}) == 8
    response = result.get_response()
    assert response.id == "r-1" and response.model_name == "fashion" and response.model_version


def test_the_784_shape_and_requested_outputs(triton, images):
    pixels, _ = images
    outputs = [grpcclient.InferRequestedOutput("class")]
    result = triton.infer("fashion", [_input(pixels.reshape(8, 784), "UINT8")], outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["class"]
    assert result.as_numpy("class").shape == (8,)
    unknown = [grpcclient.InferRequestedOutput("logits")]
    message = _refused(lambda: triton.infer("fashion", [_input(pixels, "UINT8")], outputs=unknown), "INVALID_ARGUMENT")
    assert "unknown output 'logits'" in message


def test_encoded_images_as_raw_bytes(triton, images, encode):
    pixels, _ = images
    files = np.array([encode(p, "PNG") for p in pixels[:3]], dtype=np.object_)
    result = triton.infer("fashion", [_input(files, "BYTES", name="files")])
    direct = triton.infer("fashion", [_input(pixels[:3], "UINT8")])
    np.testing.assert_array_equal(result.as_numpy("class"), direct.as_numpy("class"))


def _typed_request(datatype: str, shape: list[int], **contents) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="fashion", id="typed")
    tensor = request.inputs.add(name="pixels", datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.parametrize("datatype", ["UINT8", "FP32", "BYTES"])
def test_typed_contents_get_typed_outputs(triton, images, encode, datatype):
    pixels, _ = images
    if datatype == "UINT8":
        request = _typed_request("UINT8", [2, 28, 28], uint_contents=pixels[:2].ravel().tolist())
    elif datatype == "FP32":
        request = _typed_request("FP32", [2, 784], fp32_contents=(pixels[:2].ravel() / 255).tolist())
    else:
        request = _typed_request("BYTES", [2], bytes_contents=[encode(p, "PNG") for p in pixels[:2]])
    response = triton._client_stub.ModelInfer(request)
    assert not response.raw_output_contents and response.id == "typed"
    by_name = {o.name: o for o in response.outputs}
    probs = np.asarray(by_name["probabilities"].contents.fp32_contents, dtype=np.float32).reshape(2, 10)
    raw = triton.infer("fashion", [_input(pixels[:2], "UINT8")]).as_numpy("probabilities")
    np.testing.assert_allclose(probs, raw, rtol=1e-5, atol=1e-6)
    assert list(by_name["class"].contents.int64_contents) == probs.argmax(axis=1).tolist()
    assert [b.decode() for b in by_name["label"].contents.bytes_contents] == [
        CLASS_NAMES[k] for k in probs.argmax(axis=1)
    ]
    assert len(by_name["prediction_id"].contents.bytes_contents) == 2


def _raw_request(datatype: str, shape: list[int], raw: bytes) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="fashion")
    request.inputs.add(name="pixels", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


BAD = {
    "shape 27x28": (lambda: _raw_request("UINT8", [1, 27, 28], bytes(756)), "shape [1, 27, 28] not supported"),
    "bytes short of the shape": (lambda: _raw_request("UINT8", [2, 28, 28], bytes(784)), "needs 1568 bytes"),
    "no images": (lambda: _raw_request("UINT8", [0, 28, 28], b""), "no images"),
    "too many images": (lambda: _raw_request("UINT8", [100, 784], bytes(100 * 784)), "too many images"),
    "FP32 out of [0, 1]": (lambda: _raw_request("FP32", [1, 784], np.full(784, 255, "<f4").tobytes()), "UINT8"),
    "INT64 datatype": (lambda: _raw_request("INT64", [1, 784], bytes(784 * 8)), "not supported"),
    "BYTES of a 2-D image shape": (lambda: _raw_request("BYTES", [1, 28, 28], b""), "BYTES shape"),
    "truncated BYTES": (lambda: _raw_request("BYTES", [1], b"\x10\x00"), "truncated BYTES"),
    "not an image": (lambda: _raw_request("BYTES", [1], b"\x05\x00\x00\x00hello"), "element 0"),
    "UINT8 typed above 255": (lambda: _typed_request("UINT8", [1, 784], uint_contents=[256] * 784), "0 to 255"),
    "typed data in the wrong field": (
        lambda: _typed_request("FP32", [1, 784], int_contents=[0] * 784),
        "fp32_contents",
    ),
    "typed count off the shape": (
        lambda: _typed_request("FP32", [1, 784], fp32_contents=[0.0] * 700),
        "needs 784 values",
    ),
    "no inputs": (lambda: service_pb2.ModelInferRequest(model_name="fashion"), "exactly one input"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_inputs_are_invalid_argument(triton, case):
    make, expected = BAD[case]
    message = _refused(lambda: triton._client_stub.ModelInfer(make()), "INVALID_ARGUMENT")
    assert expected in message


def test_a_malformed_message_is_invalid_argument(server):
    with grpc.insecure_channel(grpc_target(server)) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\x0a\xff\xff\xff\xff\x0f", timeout=5)  # field 1 claims more bytes than follow
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "the message is not a valid inference.ModelInferRequest"


def test_errors_repeat_at_most_100_characters_of_a_clients_strings(triton, images):
    tensor = _input(images[0][:1], "UINT8")
    message = _refused(lambda: triton.infer("m" * 100_000, [tensor]), "NOT_FOUND")
    assert len(message) < 300 and message.startswith("model 'mmm") and "…" in message


def test_millions_of_empty_elements_stop_at_the_shapes_count(triton):
    raw = bytes(4) * 40_000  # 40,000 empty BYTES elements
    message = _refused(lambda: triton._client_stub.ModelInfer(_raw_request("BYTES", [2], raw)), "INVALID_ARGUMENT")
    assert message.endswith("shape [2] needs 2 elements, got more")


def test_raw_and_typed_together_are_refused(triton):
    request = _typed_request("UINT8", [1, 784], uint_contents=[0] * 784)
    request.raw_input_contents.append(bytes(784))
    assert "not both" in _refused(lambda: triton._client_stub.ModelInfer(request), "INVALID_ARGUMENT")


def test_unknown_model_and_version_are_not_found(triton, images):
    pixels, _ = images
    assert "not found" in _refused(lambda: triton.infer("shoes", [_input(pixels, "UINT8")]), "NOT_FOUND")
    message = _refused(lambda: triton.infer("fashion", [_input(pixels, "UINT8")], model_version="v0"), "NOT_FOUND")
    assert "'v0'" in message


def test_a_message_over_the_upload_limit_is_resource_exhausted(triton, server):
    limit = int(server.env["FC_MAX_UPLOAD_BYTES"])
    n = limit // 784 + 1
    request = _raw_request("UINT8", [n, 784], bytes(n * 784))
    _refused(lambda: triton._client_stub.ModelInfer(request), "RESOURCE_EXHAUSTED")
    assert triton.is_server_ready()  # and the server goes on


def test_peer_addresses_are_recorded_as_rest_records_them():
    """In a process of its own: the service module brings the project's stubs (see conftest)."""
    import subprocess
    import sys

    check = """
from fashion_classifier.oip_grpc.service import peer_address as p
assert p("ipv4:10.0.0.7:51234") == "10.0.0.7"
assert p("ipv6:%5B::1%5D:47470") == "::1"
assert p("ipv6:%5B::ffff:10.1.2.3%5D:5") == "10.1.2.3"
assert p("unix:/run/x.sock") is None and p(None) is None and p("") is None
"""
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_each_named_error_is_answered_with_its_code():
    """In a process of its own, as above. Each kind's code is the one its HTTP status had."""
    import subprocess
    import sys

    check = """
import grpc
from fashion_classifier import errors
from fashion_classifier.oip_grpc import service
code = grpc.StatusCode
expected = {
    errors.InvalidInput: code.INVALID_ARGUMENT,
    errors.EmptyImage: code.INVALID_ARGUMENT,
    errors.TooLarge: code.INVALID_ARGUMENT,
    errors.UnsupportedMediaType: code.INVALID_ARGUMENT,
    errors.UnsupportedImageType: code.INVALID_ARGUMENT,
    errors.UndecodableImage: code.INVALID_ARGUMENT,
    errors.ModelNotFound: code.NOT_FOUND,
    service.DeadlineExceeded: code.DEADLINE_EXCEEDED,
    errors.ModelNotReady: code.UNAVAILABLE,
}
for kind, want in expected.items():
    assert service.status_code(kind("message")) == want, kind
todo = [errors.ServiceError]
while todo:  # every named error of the domain and of this service has a code
    for kind in todo.pop().__subclasses__():
        todo.append(kind)
        if kind is not errors.ImageError:  # a base, never raised itself
            assert service.status_code(kind.__new__(kind)) != code.INTERNAL, kind  # no entry in CODES
class Unlisted(errors.ServiceError):
    pass
assert service.status_code(Unlisted("x")) == code.INTERNAL
"""
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
