"""FC_PREDLOG=off: predictions are not recorded and reads find nothing."""

from __future__ import annotations

import uuid
from datetime import date

from fashion_classifier.predlog.base import Page, PredictionBatch, PredictionRecord


class NullLog:
    def start(self) -> None:
        pass

    def record(self, rec: PredictionRecord) -> None:
        pass

    def record_batch(self, batch: PredictionBatch) -> None:
        pass

    def add_feedback(self, prediction_id: uuid.UUID, true_label: int) -> None:
        pass

    def get(self, prediction_id: uuid.UUID) -> PredictionRecord | None:
        return None

    def list_day(self, day: date, limit: int = 50, page_state: str | None = None) -> Page:
        return Page(rows=[], page_state=None)

    def recent(self, limit: int = 50) -> list[PredictionRecord]:
        return []

    def counts(self, day: date) -> dict[str, int]:
        return {}

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self) -> None:
        pass
