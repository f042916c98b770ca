"""A request's images as the classifier takes them: pixels [N, 28, 28] and what is known of each.

The one decoding path for encoded image files, whatever protocol carried them: each is prepared
like an upload (``preprocess``) within one decode budget for the request, and a failure names the
image (``what``) in its message. The count rule (at least one image, at most ``max_batch``) is here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fashion_classifier.errors import ImageError, InvalidInput, TooLarge
from fashion_classifier.inference.decode_budget import FILE_COPIES, RequestBudget
from fashion_classifier.inference.preprocess import Prepared, prepare_image


@dataclass(frozen=True, slots=True)
class ImageInfo:
    filename: str | None = None  # data only: never used as a path
    width: int | None = None
    height: int | None = None


# Frozen, so one instance stands for every image sent as a tensor (a large batch builds no copies).
NO_INFO = ImageInfo()


@dataclass(slots=True)
class Batch:
    pixels: np.ndarray  # float32 [N, 28, 28]
    infos: list[ImageInfo]
    prepared: list[Prepared | None]  # per image, None for pixel arrays


def check_count(n: int, max_batch: int) -> None:
    if n == 0:
        raise InvalidInput("no images in the request")
    if n > max_batch:
        raise TooLarge(f"too many images in one request: {n} (the limit is {max_batch})")


class ImageDecoder:
    """Decodes the image files of one request within one decode budget."""

    def __init__(self, file_copies: int = FILE_COPIES) -> None:
        # How many times each file is in memory while it decodes (base64 text is held longer).
        self._budget = RequestBudget(file_copies=file_copies)

    def decode(self, data: bytes, what: str) -> Prepared:
        """One image file as the model's input; an ``ImageError`` names it by ``what``."""
        try:
            return prepare_image(data, self._budget)
        except ImageError as exc:
            raise type(exc)(f"{what}: {exc}") from None


def decode_images(
    blobs: Sequence[bytes],
    describe: Callable[[int], str],
    file_copies: int = FILE_COPIES,
    filenames: Sequence[str | None] | None = None,
) -> Batch:
    """Image files as a batch, in order; ``describe(i)`` names the i-th in an error's message."""
    decoder = ImageDecoder(file_copies)
    prepared = [decoder.decode(blob, describe(i)) for i, blob in enumerate(blobs)]
    names = filenames if filenames is not None else [None] * len(prepared)
    infos = [ImageInfo(name, image.width, image.height) for name, image in zip(names, prepared, strict=True)]
    pixels = prepared[0].pixels[None] if len(prepared) == 1 else np.stack([image.pixels for image in prepared])
    return Batch(pixels, infos, list(prepared))
