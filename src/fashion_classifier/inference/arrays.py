"""Pixel arrays, the model's input as numbers, and the one rule every protocol applies to them.

An image is [28, 28] or [784] values (a batch: [N, 28, 28] or [N, 784]) in [0, 1], the dataset's
convention; where 0–255 is allowed, an image whose largest value exceeds 1 is read as 0–255 gray
levels and divided by 255 (decided per image).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fashion_classifier.errors import InvalidInput

SIZE = 28
IMAGE_SHAPES = ((SIZE, SIZE), (SIZE * SIZE,))  # of one image's values


def is_image_shape(shape: Sequence[int]) -> bool:
    """Is ``shape`` that of one image's values: 28×28 nested or 784 flat?"""
    return tuple(shape) in IMAGE_SHAPES


def to_float32(values: object) -> np.ndarray:
    """Numbers as float32; magnitudes beyond float32's range become inf (refused as not finite)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32)


def pixels_from_values(values: object) -> np.ndarray:
    """A JSON array (28×28 nested or 784 flat) as float32 [28, 28] in [0, 1] (see :func:`scale_pixels`).

    Raises ``ValueError`` with a message for the client.
    """
    try:
        arr = to_float32(values)
    except (ValueError, TypeError, OverflowError):
        raise ValueError("pixel arrays must be 28×28 (or 784) numbers") from None
    if not is_image_shape(arr.shape):
        raise ValueError(f"pixel arrays must be 28×28 (or 784) numbers, got shape {list(arr.shape)}")
    return scale_pixels(arr.reshape(1, SIZE, SIZE))[0]


def scale_pixels(batch: np.ndarray, allow_0_255: bool = True) -> np.ndarray:
    """Validate a float batch [N, 28, 28] and bring each image to [0, 1].

    Images are tensors in the dataset's convention with values in [0, 1]. With ``allow_0_255``
    an image whose largest value exceeds 1 is read as 0–255 gray levels and divided by 255
    (decided per image). Raises ``ValueError`` for values that are not finite or out of range.
    """
    values = np.asarray(batch)
    # The common case, checked first in the input's own dtype: every value already in [0, 1]
    # (NaN fails both comparisons), in two NumPy calls instead of the dozen below.
    if values.dtype.kind in "fiu" and values.size and values.min() >= 0.0 and values.max() <= 1.0:
        return values.astype(np.float32)  # a copy, like every other path here
    batch = to_float32(values)
    if batch.size == 0:
        return batch
    if not np.isfinite(batch).all():
        raise ValueError("pixel values must be finite numbers")
    flat = batch.reshape(len(batch), -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    wide = high > 1.0 if allow_0_255 else np.zeros(len(batch), dtype=bool)
    limit = np.where(wide, 255.0, 1.0) * (1 + 1e-6)
    bad = np.flatnonzero((low < 0.0) | (high > limit))
    if len(bad):
        i = int(bad[0])
        allowed = "[0, 1] or [0, 255]" if allow_0_255 else "[0, 1]"
        raise ValueError(
            f"pixel values must be in {allowed}, got [{low[i]:g}, {high[i]:g}]"
            + (f" in image {i}" if len(batch) > 1 else "")
        )
    if wide.any():
        # Divide (not multiply by 1/255) to match training's scaling bit for bit.
        batch = np.where(wide[:, None, None], batch / np.float32(255), batch)
    return np.clip(batch, 0.0, 1.0, dtype=np.float32)


def pixel_batch(arrays: list, field: str) -> np.ndarray:
    """A JSON list of images' arrays as float32 [N, 28, 28] in [0, 1]; ``field`` names the list."""
    try:
        arr = to_float32(arrays)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"'{field}' arrays must all be 28×28 (or 784) numbers") from None
    if not is_image_shape(arr.shape[1:]):
        raise InvalidInput(f"'{field}' arrays must be 28×28 (or 784) numbers, got shape {list(arr.shape[1:])}")
    try:
        return scale_pixels(arr.reshape(len(arrays), SIZE, SIZE))
    except ValueError as exc:
        raise InvalidInput(f"'{field}': {exc}") from None
