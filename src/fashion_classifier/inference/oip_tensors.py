"""V2 tensors as both transports carry them (REST ``/v2`` in ``oip_codec``, gRPC in
``oip_grpc.codec``): the input rules, and the outputs.

One input is accepted, under any name: FP32 or UINT8 ``[N, 28, 28]`` / ``[N, 784]`` (pixels in
[0, 1], or gray levels 0–255 divided by 255), or BYTES ``[N]`` / ``[N, 1]`` of encoded image files,
preprocessed like uploads. Counts are checked before any conversion.

Here rather than in ``web/``: both transports share it, and it knows nothing of HTTP or gRPC.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from fashion_classifier.errors import InvalidInput
from fashion_classifier.inference.arrays import SIZE, is_image_shape, scale_pixels
from fashion_classifier.inference.batch import ImageInfo, check_count, decode_images
from fashion_classifier.inference.classifier import Outcome

SERVER_NAME = "fashion-classifier"  # ServerMetadata's name, on both transports
INPUT_NAME = "pixels"
OUTPUTS = {
    "probabilities": ("FP32", [-1, 10]),
    "class": ("INT64", [-1]),
    "label": ("BYTES", [-1]),
    "prediction_id": ("BYTES", [-1]),
}
NUMERIC = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}


def unsupported_datatype(what: str, datatype: object) -> InvalidInput:
    return InvalidInput(f"{what}: datatype {datatype!r} not supported; use FP32, UINT8 or BYTES")


def numeric_count(what: str, datatype: str, shape: list[int], max_batch: int) -> int:
    """The number of images of an FP32/UINT8 tensor: its shape must be [N, 28, 28] or [N, 784]."""
    if not is_image_shape(shape[1:]):
        raise InvalidInput(f"{what}: shape {shape} not supported; use [N, 28, 28] or [N, 784]")
    check_count(shape[0], max_batch)
    return shape[0]


def bytes_count(what: str, shape: list[int], max_batch: int) -> int:
    """The number of encoded images of a BYTES tensor: its shape must be [N] or [N, 1]."""
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InvalidInput(f"{what}: BYTES shape must be [N] or [N, 1] (one encoded image per element)")
    check_count(shape[0], max_batch)
    return shape[0]


def check_value_count(what: str, shape: list[int], got: int) -> None:
    """A numeric tensor holds exactly as many values as its shape says."""
    expected = math.prod(shape)
    if got != expected:
        raise InvalidInput(f"{what}: shape {shape} needs {expected} values, got {got}")


def check_element_count(what: str, shape: list[int], got: int) -> None:
    """A BYTES tensor holds exactly one element per image of its shape."""
    if got != shape[0]:
        raise InvalidInput(f"{what}: shape {shape} needs {shape[0]} elements, got {got}")


def numeric_from_values(values: np.ndarray, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """The pixels of a numeric tensor given as values (JSON data, gRPC typed contents), checked."""
    check_value_count(what, shape, values.size)
    values = values.reshape(shape[0], SIZE, SIZE)
    if datatype == "UINT8":
        if not np.isfinite(values).all() or (values != np.rint(values)).any() or values.min() < 0 or values.max() > 255:
            raise InvalidInput(f"{what}: UINT8 values must be integers from 0 to 255")
        return values.astype(np.float32) / np.float32(255)
    try:
        return scale_pixels(values, allow_0_255=False)
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc} (send UINT8 for 0–255 gray levels)") from None


def numeric_from_binary(raw: bytes, datatype: str, shape: list[int], what: str) -> np.ndarray:
    """The pixels of a numeric tensor given as raw little-endian bytes, checked."""
    dtype = NUMERIC[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(f"{what}: shape {shape} of {datatype} needs {expected} bytes, got {len(raw)}")
    values = np.frombuffer(raw, dtype=dtype).reshape(shape[0], SIZE, SIZE)
    if datatype == "UINT8":
        return values.astype(np.float32) / np.float32(255)
    try:
        return scale_pixels(values, allow_0_255=False)
    except ValueError as exc:
        raise InvalidInput(f"{what}: {exc} (send UINT8 for 0–255 gray levels)") from None


def bytes_from_binary(raw: bytes, what: str, shape: list[int]) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte little-endian length, then its bytes.
    Stops at the first element past the shape's count (millions of empty ones fit in a message)."""
    blobs, offset = [], 0
    while offset < len(raw):
        if len(blobs) == shape[0]:
            raise InvalidInput(f"{what}: shape {shape} needs {shape[0]} elements, got more")
        if offset + 4 > len(raw):
            raise InvalidInput(f"{what}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"{what}: BYTES element of {length} bytes runs past the data")
        blobs.append(raw[offset : offset + length])
        offset += length
    return blobs


def images(blobs: list[bytes], shape: list[int], what: str, file_copies: int) -> tuple[np.ndarray, list[ImageInfo]]:
    """Encoded image files, preprocessed like uploads, within one decode budget for the tensor."""
    check_element_count(what, shape, len(blobs))
    batch = decode_images(blobs, lambda i: f"{what} element {i}", file_copies)
    return batch.pixels, batch.infos


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
