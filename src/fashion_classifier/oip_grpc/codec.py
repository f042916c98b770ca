"""ModelInfer requests and responses: the protocol's tensors to a batch of pixels and back.

The input rules are the REST ``/v2`` ones (``inference.oip_tensors``): one input, under any name, FP32 or
UINT8 ``[N, 28, 28]`` / ``[N, 784]``, or BYTES ``[N]`` / ``[N, 1]`` of encoded image files. Its data
is either in ``raw_input_contents`` (little-endian values; BYTES elements each prefixed by a
4-byte little-endian length) or in the tensor's typed ``contents`` (``fp32_contents``,
``uint_contents`` for UINT8, ``bytes_contents``). Outputs, all unless the request names some, come
back the same way as the input came: raw (``raw_output_contents``) or typed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fashion_classifier.errors import InvalidInput
from fashion_classifier.inference.batch import NO_INFO, ImageInfo
from fashion_classifier.inference.classifier import Outcome
from fashion_classifier.inference.decode_budget import FILE_COPIES
from fashion_classifier.inference.oip_tensors import (
    OUTPUTS,
    bytes_count,
    bytes_from_binary,
    check_element_count,
    check_value_count,
    images,
    numeric_count,
    numeric_from_binary,
    numeric_from_values,
    output,
    to_binary,
    unsupported_datatype,
)
from fashion_classifier.inference.oip_tensors import model_metadata as rest_metadata
from fashion_classifier.oip_grpc.stubs import grpc_predict_v2_pb2 as pb

_TYPED = {"FP32": "fp32_contents", "UINT8": "uint_contents", "BYTES": "bytes_contents"}
NAME_CHARS = 100  # of a client's string repeated in an error message (its trailer must stay small)


def shown(text: str) -> str:
    """A client's string as an error message repeats it: quoted, and cut to NAME_CHARS."""
    return repr(text if len(text) <= NAME_CHARS else text[:NAME_CHARS] + "…")


@dataclass(slots=True)
class InferRequest:
    pixels: np.ndarray
    infos: list[ImageInfo]
    request_id: str
    outputs: list[str]
    raw: bool  # the input came as raw contents: so do the outputs


def parse(request: pb.ModelInferRequest, max_batch: int) -> InferRequest:
    if len(request.inputs) != 1:
        raise InvalidInput(f"'inputs' must hold exactly one input tensor, got {len(request.inputs)}")
    tensor = request.inputs[0]
    what = f"input {shown(tensor.name)}"
    raw_count = len(request.raw_input_contents)
    if raw_count > 1:
        raise InvalidInput(f"raw_input_contents must hold one entry per input: 1, not {raw_count}")
    raw = request.raw_input_contents[0] if raw_count else None
    if raw is not None and tensor.HasField("contents"):
        raise InvalidInput(f"{what}: its data goes in raw_input_contents or in its contents, not both")
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"{what}: 'shape' must hold non-negative integers")
    datatype = tensor.datatype
    if datatype not in _TYPED:
        raise unsupported_datatype(what, datatype[:NAME_CHARS])
    if raw is None:
        _check_typed_field(tensor.contents, datatype, what)
    # Counts are checked before any conversion: a message may hold millions of typed values.
    if datatype == "BYTES":
        count = bytes_count(what, shape, max_batch)
        if raw is not None:
            blobs = bytes_from_binary(raw, what, shape)
        else:
            typed = tensor.contents.bytes_contents
            check_element_count(what, shape, len(typed))
            blobs = list(typed)
        pixels, infos = images(blobs, shape, what, FILE_COPIES)
    else:
        count = numeric_count(what, datatype, shape, max_batch)
        if raw is not None:
            pixels = numeric_from_binary(raw, datatype, shape, what)
        else:
            values = getattr(tensor.contents, _TYPED[datatype])
            check_value_count(what, shape, len(values))
            pixels = numeric_from_values(np.asarray(values, dtype=np.float64), datatype, shape, what)
        infos = [NO_INFO] * count
    return InferRequest(pixels, infos, request.id, _requested_outputs(request), raw is not None)


def _check_typed_field(contents: pb.InferTensorContents, datatype: str, what: str) -> None:
    """Typed data must be in the field of its datatype: anything in another one is a client's mistake."""
    used = [field.name for field, _ in contents.ListFields()]
    if any(name != _TYPED[datatype] for name in used):
        raise InvalidInput(
            f"{what}: {datatype} data goes in contents.{_TYPED[datatype]} (or raw_input_contents), "
            f"not in {', '.join(used)}"
        )


def _requested_outputs(request: pb.ModelInferRequest) -> list[str]:
    if not request.outputs:
        return list(OUTPUTS)
    names = [out.name for out in request.outputs]
    for name in names:
        if name not in OUTPUTS:
            raise InvalidInput(f"unknown output {shown(name)}; outputs are {', '.join(OUTPUTS)}")
    return names


def encode(outcome: Outcome, req: InferRequest, model_name: str) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model_name, model_version=outcome.model.version, id=req.request_id)
    for name in req.outputs:
        datatype, _ = OUTPUTS[name]
        shape, values = output(outcome, name)
        tensor = response.outputs.add(name=name, datatype=datatype, shape=shape)
        if req.raw:
            response.raw_output_contents.append(to_binary(values, datatype))
        elif datatype == "FP32":
            tensor.contents.fp32_contents.extend(np.asarray(values, dtype=np.float32).ravel().tolist())
        elif datatype == "INT64":
            tensor.contents.int64_contents.extend(values.tolist())
        else:
            tensor.contents.bytes_contents.extend(text.encode() for text in values)
    return response


def model_metadata(model_name: str, versions: list[str]) -> pb.ModelMetadataResponse:
    """The REST metadata (``inference.oip_tensors.model_metadata``) as its gRPC message."""
    meta = rest_metadata(model_name, versions)
    tensors = {key: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta[key]] for key in ("inputs", "outputs")}
    return pb.ModelMetadataResponse(name=model_name, versions=versions, platform=meta["platform"], **tensors)
