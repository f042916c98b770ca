"""Fixtures shared by every test folder: the dataset directory and a copy of the model store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fashion_classifier.config import DEFAULT_MODEL_DIR, PROJECT_ROOT

# Fixtures that several folders share: test images, a served copy of the model store.
pytest_plugins = ["harness.fixtures"]

# The official files, shipped beside the project (never inside it); FC_TEST_DATA_DIR overrides.
DATA_DIR = Path(os.environ.get("FC_TEST_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data" / "fashion-mnist"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST files not found in {DATA_DIR} (set FC_TEST_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def dataset(data_dir):
    from fashion_classifier.data import load_dir

    return load_dir(data_dir)


@pytest.fixture(scope="session")
def shipped_store() -> Path:
    """The default model store (model/) itself, for servers that only read it."""
    return DEFAULT_MODEL_DIR


@pytest.fixture
def model_store(tmp_path: Path) -> Path:
    """A private copy of the default model store (model/), safe to publish into."""
    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target
