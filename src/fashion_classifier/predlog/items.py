"""What the writer queues and spools: a record, one request's batch, or a feedback label."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from fashion_classifier.predlog.base import PredictionBatch, PredictionRecord


@dataclass(frozen=True)
class Feedback:
    prediction_id: uuid.UUID
    true_label: int
    created_at: datetime


Item = PredictionRecord | Feedback | PredictionBatch


def item_rows(item: Item) -> int:
    """Predictions (or feedback rows) in one queued item."""
    return len(item.ids) if type(item) is PredictionBatch else 1
