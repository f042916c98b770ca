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
``outputs`` names some. The tensor rules REST and gRPC share are in ``inference.oip_tensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from fashion_classifier.errors import InvalidInput
from fashion_classifier.inference.batch import NO_INFO, ImageInfo
from fashion_classifier.inference.classifier import Outcome
from fashion_classifier.inference.decode_budget import BASE64_FILE_COPIES, FILE_COPIES
from fashion_classifier.inference.oip_tensors import (
    NUMERIC,
    OUTPUTS,
    bytes_count,
    bytes_from_binary,
    images,
    numeric_count,
    numeric_from_binary,
    numeric_from_values,
    output,
    to_binary,
    unsupported_datatype,
)
from fashion_classifier.web.inputs import decode_b64, loads

HEADER_LENGTH = "Inference-Header-Content-Length"
HEADER_LENGTH_ENVIRON = "HTTP_" + HEADER_LENGTH.upper().replace("-", "_")


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
            raise InvalidInput(f"{HEADER_LENGTH} must be an integer") from None
        if not 0 < n <= len(body):
            raise InvalidInput(f"{HEADER_LENGTH} {n} does not fit the body of {len(body)} bytes")
        body, binary = body[:n], body[n:]
    req = loads(body)
    if not isinstance(req, dict):
        raise InvalidInput("the inference request must be a JSON object")
    request_id = req.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    params = _parameters(req, "the request")
    tensors = req.get("inputs")
    if not isinstance(tensors, list) or len(tensors) != 1:
        raise InvalidInput("'inputs' must be a list with exactly one input tensor")
    tensor = tensors[0]
    if not isinstance(tensor, dict):
        raise InvalidInput("an input tensor must be an object with name, shape, datatype and data")
    pixels, infos, used = _decode_input(tensor, binary, max_batch)
    if used != len(binary):
        raise InvalidInput(f"{len(binary) - used} bytes of binary data are not claimed by any input")
    outputs = _requested_outputs(req.get("outputs"), _flag(params, "binary_data_output", "the request"))
    return InferRequest(pixels, infos, request_id, outputs)


def _parameters(obj: dict, what: str) -> dict:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'parameters' of {what} must be an object")
    return params


def _flag(params: dict, name: str, what: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"parameter {name} of {what} must be true or false")
    return value


def _decode_input(tensor: dict, binary: bytes, max_batch: int) -> tuple[np.ndarray, list[ImageInfo], int]:
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InvalidInput("input 'name' must be a string")
    what = f"input {name!r}"
    datatype = tensor.get("datatype")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInput(f"{what}: 'shape' must be a list of non-negative integers")
    params = _parameters(tensor, what)
    size = params.get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary)):
        raise InvalidInput(f"{what}: binary_data_size {size!r} does not match the {len(binary)} bytes sent")
    if size is None and "data" not in tensor:
        raise InvalidInput(f"{what}: no 'data' (and no binary_data_size)")
    if datatype in NUMERIC:
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


def _json_numbers(data: object, what: str) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidInput(f"{what}: 'data' must be a list (flat or nested)")
    try:
        return np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"{what}: 'data' must contain only numbers, flat or evenly nested") from None


def _flatten(data: object, what: str) -> list[object]:
    if not isinstance(data, list):
        raise InvalidInput(f"{what}: 'data' must be a list of base64 strings")
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
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
    chosen = []
    for out in requested:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise InvalidInput("each requested output must be an object with a 'name'")
        if out["name"] not in OUTPUTS:
            raise InvalidInput(f"unknown output {out['name']!r}; outputs are {', '.join(OUTPUTS)}")
        params = _parameters(out, f"output {out['name']!r}")
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise InvalidInput(f"parameter binary_data of output {out['name']!r} must be true or false")
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
