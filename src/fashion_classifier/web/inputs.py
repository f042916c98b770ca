"""Turn request bodies into a float32 batch [N, 28, 28]: uploaded files, JSON instances.

Every failure is an :class:`ApiError` naming the offending item: 400 for malformed requests,
415 for unsupported file types, 422 for images that cannot be decoded (corrupt, truncated,
decompression bombs), 413 for too many images.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from flask import Request
from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser

from fashion_classifier.inference.decode_budget import BASE64_FILE_COPIES, RequestBudget
from fashion_classifier.inference.preprocess import (
    SIZE,
    ImageError,
    Prepared,
    pixels_from_values,
    prepare_image,
    scale_pixels,
    to_float32,
)
from fashion_classifier.web.classify import NO_INFO, ImageInfo
from fashion_classifier.web.responses import ApiError

FILE_FIELDS = ("file", "files")
MAX_FILENAME = 255  # characters of an uploaded file's name that are kept (and logged)
_TRUNCATED = "…"


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str | None  # as sent, at most MAX_FILENAME characters; display and logging only


@dataclass(slots=True)
class Batch:
    pixels: np.ndarray  # float32 [N, 28, 28]
    infos: list[ImageInfo]
    prepared: list[Prepared | None]  # per image, None for pixel arrays


def uploaded_files(request: Request, max_batch: int) -> list[Upload]:
    """Files of a multipart request (fields ``file``, repeatable, or ``files``); other fields are ignored.

    Parsed with PyPI ``multipart``, not Werkzeug's form parser: Werkzeug compiles two regexes per
    boundary and browsers, curl and ``requests`` send a new boundary with every request, which
    doubled the CPU cost of a one-image upload. The body size limit (413) still comes from
    ``MAX_CONTENT_LENGTH`` through ``get_data``.
    """
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "send images as multipart/form-data in a field named 'file' (or JSON instances)")
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        raise ApiError(400, "malformed multipart body: no boundary in the Content-Type header")
    body = request.get_data(cache=False)
    uploads: list[Upload] = []
    try:
        # The body is already bounded by MAX_CONTENT_LENGTH; the header limit only has to let
        # long filenames through (they are data, kept up to MAX_FILENAME characters).
        with PushMultipartParser(boundary, max_header_size=_MAX_PART_HEADER) as parser:
            for count, (segment, data) in enumerate(_segments(parser, body), 1):
                # A few parts beyond the batch limit leave room for form fields; more is an abuse.
                if count > max_batch + _EXTRA_PARTS:
                    raise ApiError(413, f"too many parts in one request (the limit is {max_batch} images)")
                if segment.name not in FILE_FIELDS:
                    continue
                name = capped_filename(segment.filename)
                if data or name:  # else a browser's empty file input
                    uploads.append(Upload(data, name))
    except ParserLimitReached as exc:
        raise ApiError(413, f"multipart part header too large: {exc}") from None
    except MultipartError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    if not uploads:
        raise ApiError(400, "no image: send a file in a multipart field named 'file'")
    return uploads


_EXTRA_PARTS = 16
_MAX_PART_HEADER = 64 * 1024


def _segments(parser: PushMultipartParser, body: bytes) -> Iterator[tuple[MultipartSegment, bytes]]:
    segment: MultipartSegment | None = None
    chunks: list[bytes] = []
    for event in itertools.chain(parser.parse(body), parser.parse(b"")):
        if isinstance(event, MultipartSegment):
            segment, chunks = event, []
        elif event is None:
            assert segment is not None
            yield segment, b"".join(chunks)
        else:
            chunks.append(event)


def check_count(n: int, max_batch: int) -> None:
    if n == 0:
        raise ApiError(400, "no images in the request")
    if n > max_batch:
        raise ApiError(413, f"too many images in one request: {n} (the limit is {max_batch})")


def decode_uploads(uploads: Sequence[Upload], max_batch: int) -> Batch:
    check_count(len(uploads), max_batch)
    budget = RequestBudget()  # the decode budget of the whole batch
    prepared = [_prepare(up.data, _describe(i, up.filename, len(uploads)), budget) for i, up in enumerate(uploads)]
    infos = [ImageInfo(up.filename, p.width, p.height) for up, p in zip(uploads, prepared, strict=True)]
    pixels = prepared[0].pixels[None] if len(prepared) == 1 else np.stack([p.pixels for p in prepared])
    return Batch(pixels, infos, list(prepared))


def capped_filename(name: str | None) -> str | None:
    """The name as sent, or its first characters, "…" and its extension when it is too long."""
    if not name or len(name) <= MAX_FILENAME:
        return name or None
    stem, dot, extension = name.rpartition(".")
    keep = dot + extension if stem and len(extension) <= 16 else ""
    return name[: MAX_FILENAME - len(_TRUNCATED) - len(keep)] + _TRUNCATED + keep


def _describe(index: int, filename: str | None, count: int) -> str:
    if filename:
        return f"file {json.dumps(filename)}"
    return "the image" if count == 1 else f"image {index}"


def _prepare(data: bytes, what: str, budget: RequestBudget | None = None) -> Prepared:
    try:
        return prepare_image(data, budget)
    except ImageError as exc:
        raise ApiError(exc.status, f"{what}: {exc}") from None


def parse_json(request: Request) -> object:
    """The request body as JSON; 415 when it is not JSON, 400 when it is malformed."""
    if not request.is_json:
        raise ApiError(415, "send a JSON body with Content-Type: application/json")
    data = request.get_data(cache=False)
    try:
        return orjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None


def decode_b64(text: object, what: str) -> bytes:
    """Base64 (standard or URL-safe, padding optional, ``data:`` URLs accepted) to bytes."""
    if not isinstance(text, str):
        raise ApiError(400, f"{what}: expected a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text.encode("ascii"))
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError(400, f"{what}: not valid base64") from None


def decode_instances(instances: object, max_batch: int, field: str = "instances") -> Batch:
    """JSON instances: 28×28 (or 784) pixel arrays, ``{"b64": ...}`` objects or base64 strings.

    Pixel values are in [0, 1]; an array with any value above 1 is read as 0–255 gray levels
    (decided per array). Arrays are tensors in the
    dataset's convention and are not preprocessed; encoded images are (see ``preprocess``).
    """
    if not isinstance(instances, list):
        raise ApiError(400, f"'{field}' must be a list")
    check_count(len(instances), max_batch)
    if all(isinstance(item, list) for item in instances):
        return Batch(_pixel_batch(instances, field), [NO_INFO] * len(instances), [None] * len(instances))
    pixels = np.empty((len(instances), SIZE, SIZE), dtype=np.float32)
    infos: list[ImageInfo] = []
    prepared: list[Prepared | None] = []
    budget = RequestBudget(file_copies=BASE64_FILE_COPIES)  # the decode budget of the whole batch
    for i, item in enumerate(instances):
        what = f"{field}[{i}]"
        if isinstance(item, dict) and len(item) == 1 and "pixels" in item:  # TF-Serving named input
            item = item["pixels"]
        if isinstance(item, list):
            try:
                pixels[i] = pixels_from_values(item)
            except ValueError as exc:
                raise ApiError(400, f"{what}: {exc}") from None
            infos.append(NO_INFO)
            prepared.append(None)
            continue
        if isinstance(item, dict):
            if set(item) != {"b64"}:
                raise ApiError(400, f'{what}: an object instance must be {{"b64": "<base64 image>"}}')
            item = item["b64"]
        if not isinstance(item, str):
            raise ApiError(400, f'{what}: expected a 28×28 array, a base64 string or {{"b64": ...}}')
        image = _prepare(decode_b64(item, what), what, budget)
        pixels[i] = image.pixels
        infos.append(ImageInfo(None, image.width, image.height))
        prepared.append(image)
    return Batch(pixels, infos, prepared)


def _pixel_batch(instances: list, field: str) -> np.ndarray:
    try:
        arr = to_float32(instances)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, f"'{field}' arrays must all be 28×28 (or 784) numbers") from None
    n = len(instances)
    if arr.shape in ((n, SIZE * SIZE), (n, SIZE, SIZE)):
        arr = arr.reshape(n, SIZE, SIZE)
    else:
        raise ApiError(400, f"'{field}' arrays must be 28×28 (or 784) numbers, got shape {list(arr.shape[1:])}")
    try:
        return scale_pixels(arr)
    except ValueError as exc:
        raise ApiError(400, f"'{field}': {exc}") from None
