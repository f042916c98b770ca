"""Fixtures shared across test folders (registered by tests/conftest.py as a pytest plugin).

Test images, the first 16 of them and their PNG files; a private copy of the default model store
served by ``serve`` with two workers and the SQLite log, as the e2e and metrics suites use it. A
folder that needs another server defines its own ``server`` fixture, which takes precedence.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fashion_classifier.config import DEFAULT_MODEL_DIR
from harness.images import encode as encode_image
from harness.images import load_test_split
from harness.server import ServerProcess, start_serve


@pytest.fixture(scope="session")
def test_split(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official test images (uint8 [10000, 28, 28]) and labels."""
    return load_test_split(data_dir)


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """encode(array or PIL image, fmt="PNG", **save_args) -> file bytes."""
    return encode_image


@pytest.fixture(scope="session")
def sample_images(test_split: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The first 16 test images (uint8) and labels."""
    images, labels = test_split
    return np.asarray(images[:16]), np.asarray(labels[:16])


@pytest.fixture(scope="session")
def png(sample_images: tuple[np.ndarray, np.ndarray], encode: Callable[..., bytes]) -> Callable[..., bytes]:
    """png(i) -> the i-th test image as PNG bytes."""
    return lambda i=0: encode(sample_images[0][i], "PNG")


@pytest.fixture(scope="module")
def store_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the default model store for this module's server (which may publish into it)."""
    target = tmp_path_factory.mktemp("store") / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


@pytest.fixture(scope="module")
def server(store_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``fashion-classifier serve`` on ``store_copy``: 2 workers, the SQLite log."""
    srv = start_serve(tmp_path_factory.mktemp("serve"), store_copy, workers=2, predlog="sqlite")
    yield srv
    srv.stop()
