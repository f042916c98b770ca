"""Fixtures of the browser test: a real ``fashion-classifier serve``, headless Chromium, an image.

The server gets its own copy of the model store and a temporary SQLite prediction log.
Screenshots and page sources go to ``$FC_TEST_ARTIFACTS/e2e`` (default ``var/test-artifacts``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from harness.browser import chromium
from harness.images import encode, load_test_split

from fashion_classifier.artifacts.store import KERAS, METADATA, current_path, current_version
from fashion_classifier.config import CLASS_NAMES, PROJECT_ROOT


@dataclass(frozen=True)
class UploadImage:
    index: int
    path: Path  # a PNG of the test image, named uniquely so the log's page can find it
    true_label: str
    keras_label: str
    keras_confidence: float


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    root = Path(os.environ.get("FC_TEST_ARTIFACTS", PROJECT_ROOT / "var" / "test-artifacts"))
    path = root / "e2e"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    # JavaScript off: the pages must work without it, and the test proves they do. Quit before
    # the server stops: Chromium keeps idle preconnected sockets, and each one holds a sync
    # worker until the client closes it, which would stall the server's graceful shutdown.
    driver = chromium(tmp_path_factory.mktemp("chromium") / "profile", javascript=False)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def upload_image(store_copy, data_dir, tmp_path_factory) -> UploadImage:
    """The first test image Keras classifies correctly with confidence >= 0.9 (so the browser's
    answer does not hinge on rounding), with Keras's own prediction for it."""
    from fashion_classifier.training import architectures, calibration

    images, labels = load_test_split(data_dir)
    version = current_path(store_copy)
    model = architectures.load(version / KERAS)
    logits = np.asarray(model(images[:200].astype(np.float32) / 255.0, training=False))
    temperature = json.loads((version / METADATA).read_text())["calibration"]["temperature"]
    probs = calibration.softmax(logits, temperature)
    predicted = probs.argmax(axis=1)
    good = np.flatnonzero((predicted == labels[:200]) & (probs.max(axis=1) >= 0.9))
    assert len(good), "Keras gets none of the first 200 test images right with confidence >= 0.9"
    index = int(good[0])
    path = tmp_path_factory.mktemp("upload") / f"fashion-mnist-test-{index}-{current_version(store_copy)[-4:]}.png"
    path.write_bytes(encode(images[index], "PNG"))
    return UploadImage(
        index, path, CLASS_NAMES[labels[index]], CLASS_NAMES[predicted[index]], float(probs[index].max())
    )
