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
    # A prediction whose confidence is below this is marked low-confidence; None (a model
    # without calibration) marks none.
    low_confidence_below: float | None = None


def low_confidence_below(meta: dict[str, Any]) -> float | None:
    """The threshold metadata.json's ``calibration`` block records, or None without one."""
    calibration = meta.get("calibration")
    if calibration is None:
        return None
    if not isinstance(calibration, dict):
        raise ModelLoadError(f"calibration in metadata.json is {type(calibration).__name__}, not an object")
    value = calibration.get("low_confidence_below")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ModelLoadError(f"calibration.low_confidence_below is {value!r}, not a probability")
    return float(value)


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
    threshold = low_confidence_below(meta)
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
        low_confidence_below=threshold,
    )
