"""Real Fashion-MNIST test images as upload files (PNG/JPEG bytes) and arrays."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_classifier.data import IMAGE_MAGIC, LABEL_MAGIC, read_idx


@lru_cache(maxsize=2)
def load_test_split(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official test images (uint8 [10000, 28, 28]) and labels (uint8 [10000])."""
    data_dir = Path(data_dir)
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", IMAGE_MAGIC)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", LABEL_MAGIC)
    return images, labels


def encode(pixels: np.ndarray, fmt: str = "PNG", **save_args: object) -> bytes:
    """A uint8 grayscale array as an image file in ``fmt`` (PNG, JPEG, GIF, BMP, ...)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").save(buf, format=fmt, **save_args)
    return buf.getvalue()


def photo_like(pixels: np.ndarray, size: tuple[int, int] = (600, 800), quality: int = 85) -> bytes:
    """A ``size`` (w, h) RGB JPEG of a test image, scaled up with light noise like a camera photo."""
    rng = np.random.default_rng(0)
    big = Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").resize(size, Image.BILINEAR)
    rgb = np.stack([np.asarray(big, dtype=np.int16)] * 3, axis=-1)
    rgb += rng.integers(-6, 7, size=rgb.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB").save(
        buf, format="JPEG", quality=quality
    )
    return buf.getvalue()
