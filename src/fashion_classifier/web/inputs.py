"""Turn request bodies into a float32 batch [N, 28, 28]: uploaded files, JSON instances.

The HTTP side only: multipart bodies, JSON and base64; images and pixel arrays are decoded by
``inference.batch`` and ``inference.arrays``. Every failure is a named error
(``fashion_classifier.errors``) naming the offending item: ``InvalidInput`` for malformed
requests, ``UnsupportedMediaType`` for unsupported types, an ``ImageError`` for images that
cannot be decoded (corrupt, truncated, decompression bombs), ``TooLarge`` for too many images.
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

from fashion_classifier.errors import InvalidInput, TooLarge, UnsupportedMediaType
from fashion_classifier.inference.arrays import SIZE, pixel_batch, pixels_from_values
from fashion_classifier.inference.batch import NO_INFO, Batch, ImageDecoder, ImageInfo, check_count, decode_images
from fashion_classifier.inference.decode_budget import BASE64_FILE_COPIES
from fashion_classifier.inference.preprocess import Prepared

FILE_FIELDS = ("file", "files")
MAX_FILENAME = 255  # characters of an uploaded file's name that are kept (and logged)
_TRUNCATED = "…"


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str | None  # as sent, at most MAX_FILENAME characters; display and logging only


def uploaded_files(request: Request, max_batch: int) -> list[Upload]:
    """Files of a multipart request (fields ``file``, repeatable, or ``files``); other fields are ignored.

    Parsed with PyPI ``multipart``, not Werkzeug's form parser: Werkzeug compiles two regexes per
    boundary and browsers, curl and ``requests`` send a new boundary with every request, which
    doubled the CPU cost of a one-image upload. The body size limit (413) still comes from
    ``MAX_CONTENT_LENGTH`` through ``get_data``.
    """
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("send images as multipart/form-data in a field named 'file' (or JSON instances)")
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        raise InvalidInput("malformed multipart body: no boundary in the Content-Type header")
    body = request.get_data(cache=False)
    uploads: list[Upload] = []
    try:
        # The body is already bounded by MAX_CONTENT_LENGTH; the header limit only has to let
        # long filenames through (they are data, kept up to MAX_FILENAME characters).
        with PushMultipartParser(boundary, max_header_size=_MAX_PART_HEADER) as parser:
            for count, (segment, data) in enumerate(_segments(parser, body), 1):
                # A few parts beyond the batch limit leave room for form fields; more is an abuse.
                if count > max_batch + _EXTRA_PARTS:
                    raise TooLarge(f"too many parts in one request (the limit is {max_batch} images)")
                if segment.name not in FILE_FIELDS:
                    continue
                name = capped_filename(segment.filename)
                if data or name:  # else a browser's empty file input
                    uploads.append(Upload(data, name))
    except ParserLimitReached as exc:
        raise TooLarge(f"multipart part header too large: {exc}") from None
    except MultipartError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    if not uploads:
        raise InvalidInput("no image: send a file in a multipart field named 'file'")
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


def decode_uploads(uploads: Sequence[Upload], max_batch: int) -> Batch:
    check_count(len(uploads), max_batch)
    names = [up.filename for up in uploads]
    return decode_images([up.data for up in uploads], lambda i: _describe(i, names[i], len(uploads)), filenames=names)


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


def parse_json(request: Request) -> object:
    """The request body as JSON; UnsupportedMediaType when it is not JSON, InvalidInput when it is malformed."""
    if not request.is_json:
        raise UnsupportedMediaType("send a JSON body with Content-Type: application/json")
    return loads(request.get_data(cache=False))


def loads(data: bytes) -> object:
    """A JSON body (every JSON API's, V2's included); InvalidInput when it is malformed."""
    try:
        return orjson.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None


def decode_b64(text: object, what: str) -> bytes:
    """Base64 (standard or URL-safe, padding optional, ``data:`` URLs accepted) to bytes."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what}: expected a base64 string")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text.encode("ascii"))
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidInput(f"{what}: not valid base64") from None


def decode_instances(instances: object, max_batch: int, field: str = "instances") -> Batch:
    """JSON instances: 28×28 (or 784) pixel arrays, ``{"b64": ...}`` objects or base64 strings.

    Pixel values are in [0, 1]; an array with any value above 1 is read as 0–255 gray levels
    (decided per array). Arrays are tensors in the
    dataset's convention and are not preprocessed; encoded images are (see ``preprocess``).
    """
    if not isinstance(instances, list):
        raise InvalidInput(f"'{field}' must be a list")
    check_count(len(instances), max_batch)
    if all(isinstance(item, list) for item in instances):
        return Batch(pixel_batch(instances, field), [NO_INFO] * len(instances), [None] * len(instances))
    pixels = np.empty((len(instances), SIZE, SIZE), dtype=np.float32)
    infos: list[ImageInfo] = []
    prepared: list[Prepared | None] = []
    decoder = ImageDecoder(BASE64_FILE_COPIES)  # one decode budget for the whole batch
    for i, item in enumerate(instances):
        what = f"{field}[{i}]"
        if isinstance(item, dict) and len(item) == 1 and "pixels" in item:  # TF-Serving named input
            item = item["pixels"]
        if isinstance(item, list):
            try:
                pixels[i] = pixels_from_values(item)
            except ValueError as exc:
                raise InvalidInput(f"{what}: {exc}") from None
            infos.append(NO_INFO)
            prepared.append(None)
            continue
        if isinstance(item, dict):
            if set(item) != {"b64"}:
                raise InvalidInput(f'{what}: an object instance must be {{"b64": "<base64 image>"}}')
            item = item["b64"]
        if not isinstance(item, str):
            raise InvalidInput(f'{what}: expected a 28×28 array, a base64 string or {{"b64": ...}}')
        image = decoder.decode(decode_b64(item, what), what)
        pixels[i] = image.pixels
        infos.append(ImageInfo(None, image.width, image.height))
        prepared.append(image)
    return Batch(pixels, infos, prepared)
