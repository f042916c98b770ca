"""Open Inference Protocol (KServe V2) request parsing and response encoding.

Requests are JSON ``{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data",
"parameters"?}], "outputs"?: [{"name", "parameters"?}]}``; with Triton's binary tensor data
extension (``Inference-Header-Content-Length``) the JSON is followed by raw tensor bytes
(``parameters.binary_data_size`` per input), and outputs are returned as binary when asked
(``binary_data`` per output, or ``binary_data_output`` for all).

One input is accepted, under any name:

* ``FP32`` ``[N, 28, 28]`` or ``[N, 784]``: pixels in [0, 1], dataset convention.
* ``UINT8`` of the same shapes: gray levels 0–255, divided by 255.
* ``BYTES`` ``[N]`` or ``[N, 1]``: encoded image files (png, jpeg, gif, bmp), preprocessed like
  uploads. In JSON each element is a base64 string (binary tensors: 4-byte little-endian
  length + raw bytes per element, as the extension defines).

``data`` may be flat (row-major) or nested. Outputs: ``probabilities`` FP32 [N, 10],
``class`` INT64 [N], ``label`` BYTES [N] and ``prediction_id`` BYTES [N]; all of them unless
``outputs`` names some.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from fashion_classifier.inference.decode_budget import BASE64_FILE_COPIES, FILE_COPIES, RequestBudget
from fashion_classifier.inference.preprocess import SIZE, ImageError, prepare_image, scale_pixels
from fashion_classifier.web.classify import NO_INFO, ImageInfo, Outcome
from fashion_classifier.web.inputs import check_count, decode_b64
from fashion_classifier.web.responses import ApiError

HEADER_LENGTH = "Inference-Header-Content-Length"
HEADER_LENGTH_ENVIRON = "HTTP_" + HEADER_LENGTH.upper().replace("-", "_")
INPUT_NAME = "pixels"
OUTPUTS = {
    "probabilities": ("FP32", [-1, 10]),
    "class": ("INT64", [-1]),
    "label": ("BYTES", [-1]),
    "prediction_id": ("BYTES", [-1]),
}
_NUMERIC = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


@dataclass(slots=True)
class InferRequest:
    pixels: np.ndarray
    infos: list[ImageInfo]
    request_id: str | None
    outputs: list[tuple[str, bool]]  # (name, as binary)
    binary_any: bool = field(default=False)


def parse(body: bytes, header_length: str | None, max_batch: int) -> InferRequest:
    binary = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ApiError(400, f"{HEADER_LENGTH} must be an integer") from None
        if not 0 < n <= len(body):
            raise ApiError(400, f"{HEADER_LENGTH} {n} does not fit the body of {len(body)} bytes")
        body, binary = body[:n], body[n:]
    try:
        req = orjson.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
    if not isinstance(req, dict):
        raise ApiError(400, "the inference request must be a JSON object")
    request_id = req.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ApiError(400, "'id' must be a string")
    params = _parameters(req, "the request")
    tensors = req.get("inputs")
    if not isinstance(tensors, list) or len(tensors) != 1:
        raise ApiError(400, "'inputs' must be a list with exactly one input tensor")
    tensor = tensors[0]
    if not isinstance(tensor, dict):
        raise ApiError(400, "an input tensor must be an object with name, shape, datatype and data")
    pixels, infos, used = _decode_input(tensor, binary, max_batch)
    if used != len(binary):
        raise ApiError(400, f"{len(binary) - used} bytes of binary data are not claimed by any input")
    outputs = _requested_outputs(req.get("outputs"), _flag(params, "binary_data_output", "the request"))
    return InferRequest(pixels, infos, request_id, outputs)


def _parameters(obj: dict, what: str) -> dict:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ApiError(400, f"'parameters' of {what} must be an object")
    return params


def _flag(params: dict, name: str, what: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(400, f"parameter {name} of {what} must be true or false")
    return value


def _decode_input(tensor: dict, binary: bytes, max_batch: int) -> tuple[np.ndarray, list[ImageInfo], int]:
    name = tensor.get("name")
    if not isinstance(name, str):
        raise ApiError(400, "input 'name' must be a string")
    what = f"input {name!r}"
    datatype = tensor.get("datatype")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ApiError(400, f"{what}: 'shape' must be a list of non-negative integers")
    params = _parameters(tensor, what)
    size = params.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary)):
        raise ApiError(400, f"{what}: binary_data_size {size!r} does not match the {len(binary)} bytes sent")
    if size is None and "data" not in tensor:
        raise ApiError(400, f"{what}: no 'data' (and no binary_data_size)")
    if datatype in _NUMERIC:
        count = numeric_count(what, datatype, shape, max_batch)
        if size is not None:
            pixels = numeric_from_binary(binary[:size], datatype, shape, what)
        else:
            pixels = numeric_from_values(_json_numbers(tensor["data"], what), datatype, shape, what)
        return pixels, [NO_INFO] * count, size or 0
    if datatype == "BYTES":
        bytes_count(what, shape, max_batch)
        if size is not None:
            blobs = bytes_from_binary(binary[:size], what, shape)
        else:
            blobs = [decode_b64(item, f"{what} element {i}") for i, item in enumerate(_flatten(tensor["data"], what))]
        # One decode budget for the whole tensor; base64 elements are held longer as text.
        pixels, infos = images(blobs, shape, what, FILE_COPIES if size is not None else BASE64_FILE_COPIES)
        return pixels, infos, size or 0
    raise unsupported_datatype(what, datatype)


# The rules every input format shares (JSON and binary here, raw and typed contents over gRPC).


def unsupported_datatype(what: str, datatype: object) -> ApiError:
    return ApiError(400, f"{what}: datatype {datatype!r} not supported; use FP32, UINT8 or BYTES")


def numeric_count(what: str, datatype: str, shape: list[int], max_batch: int) -> int:
    """The number of images of an FP32/UINT8 tensor: its shape must be [N, 28, 28] or [N, 784]."""
    if len(shape) not in (2, 3) or tuple(shape[1:]) not in ((SIZE, SIZE), (SIZE * SIZE,)):
        raise ApiError(400, f"{what}: shape {shape} not supported; use [N, 28, 28] or [N, 784]")
    check_count(shape[0], max_batch)
    return shape[0]


def bytes_count(what: str, shape: list[int], max_batch: int) -> int:
    """The number of encoded images of a BYTES tensor: its shape must be [N] or [N, 1]."""
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise ApiError(400, f"{what}: BYTES shape must be [N] or [N, 1] (one encoded image per element)")
    check_count(shape[0], max_batch)
    return shape[0]


def check_value_count(what: str, shape: list[int], got: int) -> None:
    """A numeric tensor holds exactly as many values as its shape says."""
    expected = math.prod(shape)
    if got != expected:
        raise ApiError(400, f"{what}: shape {shape} needs {expected} values, got {got}")


def check_element_count(what: str, shape: list[int], got: int) -> None:
    """A BYTES tensor holds exactly one element per image of its shape."""
    if got != shape[0]:
        raise ApiError(400, f"{what}: shape {shape} needs {shape[0]} elements, got {got}")


def _json_numbers(data: object, what: str) -> np.ndarray:
    if not isinstance(data, list):
        raise ApiError(400, f"{what}: 'data' must be a list (flat or nested)")
    try:
        return np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, f"{what}: 'data' must contain only numbers, flat or evenly nested") from None


def numeric_from_values(values: np.ndarray, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """The pixels of a numeric tensor given as values (JSON data, gRPC typed contents), checked."""
    check_value_count(what, shape, values.size)
    values = values.reshape(shape[0], SIZE, SIZE)
    if datatype == "UINT8":
        if not np.isfinite(values).all() or (values != np.rint(values)).any() or values.min() < 0 or values.max() > 255:
            raise ApiError(400, f"{what}: UINT8 values must be integers from 0 to 255")
        return values.astype(np.float32) / np.float32(255)
    try:
        return scale_pixels(values, allow_0_255=False)
    except ValueError as exc:
        raise ApiError(400, f"{what}: {exc} (send UINT8 for 0–255 gray levels)") from None


def numeric_from_binary(raw: bytes, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """The pixels of a numeric tensor given as raw little-endian bytes, checked."""
    dtype = _NUMERIC[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ApiError(400, f"{what}: shape {shape} of {datatype} needs {expected} bytes, got {len(raw)}")
    values = np.frombuffer(raw, dtype=dtype).reshape(shape[0], SIZE, SIZE)
    if datatype == "UINT8":
        return values.astype(np.float32) / np.float32(255)
    try:
        return scale_pixels(values, allow_0_255=False)
    except ValueError as exc:
        raise ApiError(400, f"{what}: {exc} (send UINT8 for 0–255 gray levels)") from None


def bytes_from_binary(raw: bytes, what: str, shape: list[int]) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte little-endian length, then its bytes.
    Stops at the first element past the shape's count (millions of empty ones fit in a message)."""
    blobs, offset = [], 0
    while offset < len(raw):
        if len(blobs) == shape[0]:
            raise ApiError(400, f"{what}: shape {shape} needs {shape[0]} elements, got more")
        if offset + 4 > len(raw):
            raise ApiError(400, f"{what}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ApiError(400, f"{what}: BYTES element of {length} bytes runs past the data")
        blobs.append(raw[offset : offset + length])
        offset += length
    return blobs


def images(blobs: list[bytes], shape: list[int], what: str, file_copies: int) -> tuple[np.ndarray, list[ImageInfo]]:
    """Encoded image files, preprocessed like uploads, within one decode budget for the tensor."""
    count = shape[0]
    check_element_count(what, shape, len(blobs))
    pixels = np.empty((count, SIZE, SIZE), dtype=np.float32)
    infos = []
    budget = RequestBudget(file_copies=file_copies)
    for i, blob in enumerate(blobs):
        try:
            image = prepare_image(blob, budget)
        except ImageError as exc:
            raise ApiError(exc.status, f"{what} element {i}: {exc}") from None
        pixels[i] = image.pixels
        infos.append(ImageInfo(None, image.width, image.height))
    return pixels, infos


def _flatten(data: object, what: str) -> list[object]:
    if not isinstance(data, list):
        raise ApiError(400, f"{what}: 'data' must be a list of base64 strings")
    flat: list[object] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item, what))
        else:
            flat.append(item)
    return flat


def _requested_outputs(requested: object, binary_default: bool) -> list[tuple[str, bool]]:
    if requested is None:
        return [(name, binary_default) for name in OUTPUTS]
    if not isinstance(requested, list):
        raise ApiError(400, "'outputs' must be a list of {\"name\": ...} objects")
    chosen = []
    for out in requested:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise ApiError(400, "each requested output must be an object with a 'name'")
        if out["name"] not in OUTPUTS:
            raise ApiError(400, f"unknown output {out['name']!r}; outputs are {', '.join(OUTPUTS)}")
        params = _parameters(out, f"output {out['name']!r}")
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise ApiError(400, f"parameter binary_data of output {out['name']!r} must be true or false")
        chosen.append((out["name"], binary))
    return chosen


def encode(outcome: Outcome, req: InferRequest, model_name: str) -> tuple[bytes, str, str | None]:
    """The response body, its content type and, when binary outputs follow the JSON header,
    the value of the ``Inference-Header-Content-Length`` header."""
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in req.outputs:
        datatype, _ = OUTPUTS[name]
        shape, values = output(outcome, name)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            raw = to_binary(values, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values.ravel().tolist() if isinstance(values, np.ndarray) else values
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model_name, "model_version": outcome.model.version}
    if req.request_id is not None:
        response["id"] = req.request_id
    response["outputs"] = tensors
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, "application/json", None
    return header + b"".join(chunks), "application/octet-stream", str(len(header))


def output(outcome: Outcome, name: str) -> tuple[list[int], np.ndarray | list[str]]:
    """The shape and values of one of :data:`OUTPUTS` for an outcome."""
    n = len(outcome.classes)  # not outcome.ids: those are made only when asked for or logged
    if name == "probabilities":
        return [n, 10], outcome.probs
    if name == "class":
        return [n], outcome.classes.astype(np.int64)
    if name == "label":
        return [n], outcome.labels
    return [n], [str(pid) for pid in outcome.ids]


def to_binary(values: object, datatype: str) -> bytes:
    """Values as the binary extension and gRPC's raw contents carry them (BYTES: length-prefixed)."""
    if datatype == "FP32":
        return np.ascontiguousarray(values, dtype="<f4").tobytes()
    if datatype == "INT64":
        return np.ascontiguousarray(values, dtype="<i8").tobytes()
    parts = []
    for text in values:  # BYTES: 4-byte little-endian length, then the bytes
        raw = text.encode()
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def model_metadata(model_name: str, versions: list[str]) -> dict[str, Any]:
    return {
        "name": model_name,
        "versions": versions,
        "platform": "tflite",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, SIZE, SIZE]}],
        "outputs": [{"name": name, "datatype": dt, "shape": shape} for name, (dt, shape) in OUTPUTS.items()],
    }
