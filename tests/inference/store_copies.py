"""Publish new versions into a test copy of the model store (for hot-reload tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

from fashion_classifier.artifacts import store


def publish_copy(model_dir: Path, tag: str, tflite: bytes | None = None) -> str:
    """Publish the current version again under a new id (optionally with other export bytes,
    checksummed correctly) and make it current; returns the new version id."""
    source = store.current_path(model_dir)
    meta = store.load_metadata(source)
    version = f"{meta['version']}-{tag}"
    staged = store.staging_dir(model_dir)
    for item in source.iterdir():
        if item.name != store.METADATA:
            shutil.copy2(item, staged / item.name)
    if tflite is not None:
        (staged / store.TFLITE).write_bytes(tflite)
    meta["version"] = version
    store.write_metadata(staged, meta)
    store.publish(model_dir, staged, version, keep=10)
    return version


def corrupt_current(model_dir: Path) -> None:
    """Change the current export's bytes after publication, so its checksum no longer matches."""
    path = store.current_path(model_dir) / store.TFLITE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def other_version(model_dir: Path) -> str:
    """A published version that is not the current one (the shipped store's MLP)."""
    current = store.current_version(model_dir)
    return next(v for v in store.list_versions(model_dir) if v != current)


def publish_beside(model_dir: Path, tag: str, tflite: bytes | None = None) -> str:
    """Publish a copy of the current version under a new id, leaving CURRENT where it was."""
    current = store.current_version(model_dir)
    version = publish_copy(model_dir, tag, tflite)
    store.set_current(model_dir, current)
    return version


def publish_constant(model_dir: Path, tag: str, answer: int = 0) -> str:
    """Publish a deliberately broken version beside the current one: whatever the image, it answers
    class ``answer`` with certainty. Needs TensorFlow (the training extra) to export it."""
    import keras
    import numpy as np

    from fashion_classifier.artifacts.export import to_tflite

    bias = np.full(10, -20.0, np.float32)
    bias[answer] = 20.0
    net = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, kernel_initializer="zeros")]
    )
    net.layers[-1].bias.assign(bias)
    current = store.current_version(model_dir)
    meta = store.load_metadata(store.current_path(model_dir))
    version = f"{meta['version']}-{tag}"
    staged = store.staging_dir(model_dir)
    to_tflite(net, staged / store.TFLITE)
    store.write_metadata(staged, {"version": version, "architecture": "constant", "class_names": meta["class_names"]})
    store.publish(model_dir, staged, version, keep=10)
    store.set_current(model_dir, current)
    return version
