"""Fixtures for the inference tests: real test images and the default model, loaded once."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fashion_classifier.artifacts import store
from fashion_classifier.config import DEFAULT_MODEL_DIR
from fashion_classifier.data import IMAGE_MAGIC, LABEL_MAGIC, read_idx


@pytest.fixture(scope="session")
def test_split(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """The official test images (uint8 [10000, 28, 28]) and labels."""
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", IMAGE_MAGIC)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", LABEL_MAGIC)
    return images, labels


@pytest.fixture(scope="session")
def default_version_dir():
    return store.current_path(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="session")
def loaded_model(default_version_dir):
    from fashion_classifier.inference.loader import load_version

    return load_version(default_version_dir)


def _encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_args)
    return buf.getvalue()


@pytest.fixture(scope="session")
def encode():
    """encode(array or PIL image, fmt="PNG", **save_args) -> file bytes."""
    return _encode
