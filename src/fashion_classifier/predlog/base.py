"""The prediction log's contract: one record type and one interface, whatever the backend.

The web layer hands each request's predictions to :meth:`PredictionLog.record_batch` as one
:class:`PredictionBatch` (what it has at hand, nothing converted), or single
:class:`PredictionRecord` objects to :meth:`PredictionLog.record`. Both return at once and never
raise: writing happens beside the response, never in its path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True)
class PredictionRecord:
    id: uuid.UUID  # a time-based uuid (uuid1), so it doubles as the Cassandra timeuuid
    created_at: datetime  # timezone-aware UTC
    model_version: str
    predicted_class: int
    label: str
    confidence: float
    top3: tuple[tuple[str, float], ...]  # (label, probability), best first
    source: str  # "upload" (web page), "api" (/api/v1), "v1" (TF-Serving style), "v2" (Open Inference), "grpc"
    filename: str | None = None  # as sent by the client; stored as data only, never used as a path
    image_width: int | None = None
    image_height: int | None = None
    latency_ms: float = 0.0
    client_hash: str | None = None  # salted hash of the client address, never the address itself
    true_label: int | None = field(default=None, compare=False)  # filled from feedback on reads
    # During a rollout (artifacts.rollout): the arm that answered ("current" or "candidate"), and a
    # shadow candidate's version, class and confidence for the same image. None before rollouts.
    arm: str | None = None
    shadow_version: str | None = None
    shadow_class: int | None = None
    shadow_confidence: float | None = None


class PredictionBatch(NamedTuple):
    """All predictions of one request, as the request thread has them.

    The request thread only builds this tuple (a constant cost, whatever the batch size); turning it
    into rows (labels, probabilities as Python floats, encoded columns) happens in the log's
    writer thread, once per batch where possible. Row ``i`` is image ``i`` of the request.
    """

    ids: list[uuid.UUID]  # time-based uuids, one per image
    created_us: int  # time.time_ns() // 1000 when the response was built: every row's created_at
    model_version: str
    names: tuple[str, ...] | list[str]  # class index -> label
    classes: Any  # int array [N] (NumPy or list): the predicted class of each image
    top3: Any  # int array [N, 3]: class indices, best first
    probs: Any  # float array [N, K]: probabilities per class
    source: str
    infos: Any  # None, or per image an object with .filename, .width, .height (data only)
    latency_ms: float
    client_hash: str | None
    arm: str | None = None  # the rollout arm that answered
    shadow_version: str | None = None  # a shadow candidate that predicted the same images
    shadow_probs: Any = None  # float array [N, K]: its probabilities (None without a shadow)

    @property
    def rows(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Page:
    rows: list[PredictionRecord]
    page_state: str | None  # opaque token for the next page; None on the last page


class PredictionLogUnavailable(RuntimeError):
    """Reading failed because the backend cannot be reached (the web layer answers 503).

    The message is shown to clients: it says what is unavailable, never the driver's error
    text (hosts, internals), which stays in ``__cause__`` for the server's log.
    """


class InvalidPageState(ValueError):
    """A ``page_state`` token that this log did not issue (the web layer answers 400)."""


class MigrationFailed(RuntimeError):
    """The schema could not be migrated, said in one line.

    ``unavailable``: the backend could not be reached, or refused the login (the CLI exits 3);
    otherwise the settings or the schema change were refused (exit 2).
    """

    def __init__(self, message: str, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class PredictionLog(Protocol):
    def start(self) -> None:
        """Open the backend for this process in the background, before the first prediction, so
        that ``fc_predlog_connected`` describes an idle worker too. Idempotent; never raises."""

    def record(self, rec: PredictionRecord) -> None:
        """Queue one record for writing. Returns at once; never raises."""

    def record_batch(self, batch: PredictionBatch) -> None:
        """Queue every prediction of one request (the serving hot path). Returns at once; never raises."""

    def add_feedback(self, prediction_id: uuid.UUID, true_label: int) -> None:
        """Store the true label for a prediction (queued like records)."""

    def get(self, prediction_id: uuid.UUID) -> PredictionRecord | None:
        """One prediction with its feedback, or None. Raises PredictionLogUnavailable."""

    def list_day(self, day: date, limit: int = 50, page_state: str | None = None) -> Page:
        """Predictions of one UTC day, newest first.

        Raises InvalidPageState for a token it did not issue, PredictionLogUnavailable when the
        backend cannot be reached.
        """

    def recent(self, limit: int = 50) -> list[PredictionRecord]:
        """Newest predictions across days (today first, then earlier days)."""

    def counts(self, day: date) -> dict[str, int]:
        """Predictions per class label for one UTC day."""

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued records are written (or spooled); True when nothing is pending."""

    def close(self) -> None: ...
