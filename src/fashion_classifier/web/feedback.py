"""Feedback: the true label of an earlier prediction, counted per model version and stored."""

from __future__ import annotations

import uuid
from typing import Any

from fashion_classifier import metrics
from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.web.responses import ApiError
from fashion_classifier.web.state import ServingState


def parse_prediction_id(value: object) -> uuid.UUID:
    if not isinstance(value, str):
        raise ApiError(400, "prediction_id must be a string (the id returned by a prediction)")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise ApiError(400, f"prediction_id {value[:64]!r} is not a UUID") from None


def parse_label(value: object) -> int:
    """A class index 0–9 or a class name (case-insensitive)."""
    if isinstance(value, bool):
        raise ApiError(400, "true_label must be a class index 0–9 or a class name")
    if isinstance(value, int) and 0 <= value < len(CLASS_NAMES):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and int(text) < len(CLASS_NAMES):
            return int(text)
        lowered = [name.lower() for name in CLASS_NAMES]
        if text.lower() in lowered:
            return lowered.index(text.lower())
    raise ApiError(400, f"true_label must be a class index 0–9 or one of {', '.join(CLASS_NAMES)}")


def submit(state: ServingState, prediction_id: object, true_label: object) -> dict[str, Any]:
    pid = parse_prediction_id(prediction_id)
    label = parse_label(true_label)
    found = state.classifier.find(pid)
    if found is None:
        raise ApiError(404, f"no prediction with id {pid}")
    version, predicted = found
    correct = predicted == label
    metrics.FEEDBACK.labels(version, "true" if correct else "false").inc()
    state.predlog.add_feedback(pid, label)
    return {
        "prediction_id": str(pid),
        "true_label": label,
        "true_label_name": CLASS_NAMES[label],
        "predicted_class": predicted,
        "predicted_label": CLASS_NAMES[predicted] if 0 <= predicted < len(CLASS_NAMES) else None,
        "model_version": version,
        "correct": correct,
    }
