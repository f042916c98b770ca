"""Feedback: the true label of an earlier prediction, counted per model version and stored.

Nothing here waits for the prediction log: an id is looked up in this process's recent
predictions and at most once in the log, and a signed feedback token (``auth``) needs no lookup.
"""

from __future__ import annotations

import uuid
from typing import Any

from fashion_classifier import metrics
from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.errors import InvalidInput, ServiceError
from fashion_classifier.inference.classifier import UNWRITTEN_SECONDS
from fashion_classifier.inference.serving_state import ServingState


class PredictionNotFound(ServiceError):
    """No prediction with the id, in this process or in the log."""


class NotWrittenYet(ServiceError):
    """The id is recent: its row may still be on its way to the log (answered with Retry-After)."""

    def __init__(self, prediction_id: uuid.UUID) -> None:
        super().__init__(
            f"no prediction with id {prediction_id} in the log yet: one made in the last "
            f"{UNWRITTEN_SECONDS:.0f} s by another worker may still be queued for writing; retry in a second"
        )


def parse_prediction_id(value: object) -> uuid.UUID:
    if not isinstance(value, str):
        raise InvalidInput("prediction_id must be a string (the id returned by a prediction)")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidInput(f"prediction_id {value[:64]!r} is not a UUID") from None


def parse_label(value: object) -> int:
    """A class index 0–9 or a class name (case-insensitive)."""
    if isinstance(value, bool):
        raise InvalidInput("true_label must be a class index 0–9 or a class name")
    if isinstance(value, int) and 0 <= value < len(CLASS_NAMES):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and int(text) < len(CLASS_NAMES):
            return int(text)
        lowered = [name.lower() for name in CLASS_NAMES]
        if text.lower() in lowered:
            return lowered.index(text.lower())
    raise InvalidInput(f"true_label must be a class index 0–9 or one of {', '.join(CLASS_NAMES)}")


def lookup(state: ServingState, pid: uuid.UUID) -> tuple[str, int]:
    """(model version, predicted class) of a prediction, answered at once: PredictionNotFound for
    an unknown id, NotWrittenYet for a recent one (nothing waits for the log)."""
    found = state.classifier.find(pid)
    if found is not None:
        return found
    if state.classifier.may_be_unwritten(pid):
        raise NotWrittenYet(pid)
    raise PredictionNotFound(f"no prediction with id {pid}")


def submit(state: ServingState, pid: uuid.UUID, label: int) -> dict[str, Any]:
    """Feedback on a prediction found by :func:`lookup` (the API, the form with the API token)."""
    version, predicted = lookup(state, pid)
    return record(state, pid, label, version, predicted)


def record(state: ServingState, pid: uuid.UUID, label: int, version: str, predicted: int) -> dict[str, Any]:
    """Count and store feedback on a prediction whose version and class are known (looked up,
    or vouched for by a signed feedback token)."""
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
