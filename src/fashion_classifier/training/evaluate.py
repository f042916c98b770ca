"""Test-set metrics: accuracy, loss, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

from fashion_classifier.config import CLASS_NAMES


def metrics_from_probabilities(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Everything the model card shows, from predicted probabilities and true labels."""
    labels = labels.astype(np.int64)
    predicted = probs.argmax(axis=1)
    n_classes = probs.shape[1]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    eps = 1e-12
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0))))
    per_class = {}
    for k, name in enumerate(CLASS_NAMES[:n_classes]):
        tp = confusion[k, k]
        predicted_k = confusion[:, k].sum()
        actual_k = confusion[k, :].sum()
        precision = tp / predicted_k if predicted_k else 0.0
        recall = tp / actual_k if actual_k else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(actual_k),
        }
    return {
        "test_accuracy": round(float((predicted == labels).mean()), 4),
        "test_loss": round(loss, 4),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }
