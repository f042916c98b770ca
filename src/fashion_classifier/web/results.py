"""JSON shapes of predictions and prediction-log records, shared by the API and the pages."""

from __future__ import annotations

from typing import Any

import numpy as np

from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.inference.classifier import Outcome
from fashion_classifier.predlog.base import PredictionRecord

# Probabilities are rounded to 6 decimals for the JSON API: |error| <= 5e-7, well inside the
# 1e-5 agreement with Keras, and the response is shorter and cheaper to encode.
DECIMALS = 6


def prediction_results(outcome: Outcome) -> list[dict[str, Any]]:
    """One result per image: id, class, label, confidence, low_confidence, probabilities, top 3,
    model version."""
    names = outcome.model.class_names
    version = outcome.model.version
    probs = np.round(outcome.probs.astype(np.float64), DECIMALS).tolist()
    classes = outcome.classes.tolist()
    top3 = outcome.top3.tolist()
    infos = outcome.infos
    unsure = outcome.low_confidence
    results = []
    for i, pid in enumerate(outcome.ids):
        row = probs[i]
        cls = classes[i]
        result = {
            "prediction_id": str(pid),
            "class": cls,
            "label": names[cls],
            "confidence": row[cls],
            "low_confidence": unsure[i],
            "probabilities": dict(zip(names, row, strict=True)),
            "top3": [{"class": k, "label": names[k], "probability": row[k]} for k in top3[i]],
            "model_version": version,
        }
        if infos is not None and infos[i].filename is not None:
            result["filename"] = infos[i].filename
        results.append(result)
    return results


def label_name(index: int | None) -> str | None:
    if index is None or not 0 <= index < len(CLASS_NAMES):
        return None
    return CLASS_NAMES[index]


def record_json(rec: PredictionRecord) -> dict[str, Any]:
    return {
        "prediction_id": str(rec.id),
        "created_at": rec.created_at.isoformat(),
        "model_version": rec.model_version,
        "class": rec.predicted_class,
        "label": rec.label,
        "confidence": rec.confidence,
        "top3": [{"label": label, "probability": p} for label, p in rec.top3],
        "source": rec.source,
        "filename": rec.filename,
        "image_width": rec.image_width,
        "image_height": rec.image_height,
        "latency_ms": rec.latency_ms,
        "true_label": rec.true_label,
        "true_label_name": label_name(rec.true_label),
        "arm": rec.arm,
        "shadow": None
        if rec.shadow_version is None
        else {
            "model_version": rec.shadow_version,
            "class": rec.shadow_class,
            "label": label_name(rec.shadow_class),
            "confidence": rec.shadow_confidence,
        },
    }
