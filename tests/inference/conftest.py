"""Fixtures for the inference tests: real test images and the default model, loaded once."""

from __future__ import annotations

import pytest

from fashion_classifier.artifacts import store
from fashion_classifier.config import DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def default_version_dir():
    return store.current_path(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="session")
def loaded_model(default_version_dir):
    from fashion_classifier.inference.loader import load_version

    return load_version(default_version_dir)
