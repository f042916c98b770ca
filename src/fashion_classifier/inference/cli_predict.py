"""``fashion-classifier predict FILE...``: classify local image files with the current model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fashion_classifier.artifacts import store
from fashion_classifier.errors import ImageError
from fashion_classifier.inference.loader import load_version
from fashion_classifier.inference.predictor import ModelLoadError
from fashion_classifier.inference.preprocess import prepare_image


def predict_files(model_dir: Path, files: list[Path], as_json: bool = False) -> int:
    """Print one line per file; returns 0, or 2 when any file could not be read or decoded.

    Raises ``store.ArtifactError`` when there is no usable model.
    """
    try:
        model = load_version(store.current_path(model_dir))
    except ModelLoadError as exc:
        raise store.ArtifactError(str(exc)) from None
    names = model.class_names
    failed = 0
    for path in files:
        try:
            image = prepare_image(Path(path).read_bytes())
        except (OSError, ImageError) as exc:
            failed += 1
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if as_json:
                print(json.dumps({"file": str(path), "error": message}))
            else:
                print(f"{path}: error: {message}")
            continue
        probs = model.predictor.predict(image.pixels[None])[0]
        order = np.argsort(-probs, kind="stable")[:3].tolist()
        best = order[0]
        if as_json:
            print(
                json.dumps(
                    {
                        "file": str(path),
                        "class": best,
                        "label": names[best],
                        "confidence": round(float(probs[best]), 6),
                        "top3": [{"label": names[k], "probability": round(float(probs[k]), 6)} for k in order],
                        "model_version": model.version,
                    }
                )
            )
        else:
            top = ", ".join(f"{names[k]} {probs[k]:.3f}" for k in order)
            print(f"{path}: {names[best]} ({top})")
    return 2 if failed else 0
