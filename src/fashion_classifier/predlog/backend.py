"""What the SQLite and Cassandra logs share: their constructor and their write side.

Each backend is built from the :class:`Settings` alone and hands records, batches and feedback to
its process's :class:`AsyncWriter`, which drives the backend's sink and spools what it cannot
write. A backend adds its reads (``get``, ``list_day``, ``recent``, ``counts``) and may refuse
items its store cannot file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from fashion_classifier.config import Settings
from fashion_classifier.predlog.base import PredictionBatch, PredictionRecord
from fashion_classifier.predlog.items import Feedback
from fashion_classifier.predlog.limits import limit_record
from fashion_classifier.predlog.records import batch_records
from fashion_classifier.predlog.writer import AsyncWriter, Sink


class Backend:
    """The write side of a :class:`PredictionLog` over an :class:`AsyncWriter`."""

    def __init__(self, settings: Settings, sink_factory: Callable[[], Sink], **writer_options: float) -> None:
        self._settings = settings
        self._writer = AsyncWriter(sink_factory, settings.spool_dir, settings.queue_size, **writer_options)

    def start(self) -> None:
        self._writer.start()

    def record(self, rec: PredictionRecord) -> None:
        self._writer.submit(limit_record(rec))

    def record_batch(self, batch: PredictionBatch) -> None:
        if batch.ids and (batch.ids[0].int >> 76) & 0xF != 1:  # the version, cheaper than .version
            # Rows sort by the time inside the id; other ids take the records' slower path.
            for rec in batch_records(batch):
                self.record(rec)
            return
        self._writer.submit(batch, len(batch.ids))

    def add_feedback(self, prediction_id: uuid.UUID, true_label: int) -> None:
        self._writer.submit(Feedback(prediction_id, int(true_label), datetime.now(UTC)))

    def flush(self, timeout: float = 10.0) -> bool:
        return self._writer.flush(timeout)

    def close(self) -> None:
        self._writer.close()
