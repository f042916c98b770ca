"""The prediction log's contract: one record type and one interface, whatever the backend.

The web layer builds a :class:`PredictionRecord` per prediction and hands it to
:meth:`PredictionLog.record`, which must return at once and never raise: writing happens
beside the response, never in its path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol


@dataclass(frozen=True)
class PredictionRecord:
    id: uuid.UUID  # a time-based uuid (uuid1), so it doubles as the Cassandra timeuuid
    created_at: datetime  # timezone-aware UTC
    model_version: str
    predicted_class: int
    label: str
    confidence: float
    top3: tuple[tuple[str, float], ...]  # (label, probability), best first
    source: str  # "upload" (web page), "api" (/api/v1), "v1" (TF-Serving style), "v2" (Open Inference)
    filename: str | None = None  # as sent by the client; stored as data only, never used as a path
    image_width: int | None = None
    image_height: int | None = None
    latency_ms: float = 0.0
    client_hash: str | None = None  # salted hash of the client address, never the address itself
    true_label: int | None = field(default=None, compare=False)  # filled from feedback on reads


@dataclass(frozen=True)
class Page:
    rows: list[PredictionRecord]
    page_state: str | None  # opaque token for the next page; None on the last page


class PredictionLog(Protocol):
    def record(self, rec: PredictionRecord) -> None:
        """Queue one record for writing. Returns at once; never raises."""

    def add_feedback(self, prediction_id: uuid.UUID, true_label: int) -> None:
        """Store the true label for a prediction (queued like records)."""

    def get(self, prediction_id: uuid.UUID) -> PredictionRecord | None: ...

    def list_day(self, day: date, limit: int = 50, page_state: str | None = None) -> Page:
        """Predictions of one UTC day, newest first."""

    def recent(self, limit: int = 50) -> list[PredictionRecord]:
        """Newest predictions across days (today first, then earlier days)."""

    def counts(self, day: date) -> dict[str, int]:
        """Predictions per class label for one UTC day."""

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued records are written (or spooled); True when nothing is pending."""

    def close(self) -> None: ...
