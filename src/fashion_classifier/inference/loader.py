"""Load one published model version for serving: verify, load, validate, warm."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion_classifier.artifacts import store
from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.inference.predictor import ModelLoadError, Predictor, validate


@dataclass(frozen=True)
class LoadedModel:
    """A validated model version ready to serve; immutable, so requests can hold on to it."""

    version: str
    architecture: str
    path: Path
    metadata: dict[str, Any] = field(repr=False)
    predictor: Predictor = field(repr=False)
    class_names: tuple[str, ...] = CLASS_NAMES
    load_seconds: float = 0.0


def load_version(path: Path) -> LoadedModel:
    """Check the version's checksums, load its export and run test inferences.

    Raises :class:`ModelLoadError` (or ``store.ArtifactError``) with the reason; nothing is
    half-loaded: the caller keeps whatever it was serving.
    """
    started = time.perf_counter()
    path = Path(path)
    meta = store.verify(path, (store.TFLITE,))
    names = tuple(meta.get("class_names") or CLASS_NAMES)
    if len(names) != len(CLASS_NAMES):
        raise ModelLoadError(f"{path} declares {len(names)} classes, expected {len(CLASS_NAMES)}")
    predictor = Predictor(path / store.TFLITE)
    validate(predictor)
    return LoadedModel(
        version=str(meta["version"]),
        architecture=str(meta.get("architecture", "unknown")),
        path=path,
        metadata=meta,
        predictor=predictor,
        class_names=names,
        load_seconds=time.perf_counter() - started,
    )
