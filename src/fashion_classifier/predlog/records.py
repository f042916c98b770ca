"""Records from what the backends hold: a request's batch, a stored row, and back to a dict.

:func:`record_from_row` is the one place a stored row becomes a :class:`PredictionRecord`,
whichever store it comes from (a SQLite row, a Cassandra row, a spooled or printed JSON object);
:func:`record_to_dict` is its inverse in JSON-safe values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from fashion_classifier.predlog.base import PredictionBatch, PredictionRecord
from fashion_classifier.predlog.limits import limit_filename

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(moment: datetime) -> datetime:
    """Aware UTC datetime; naive values (as drivers return them) are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def created_datetime(created_us: int) -> datetime:
    """The aware UTC datetime of a batch's ``created_us`` (exact, no float rounding)."""
    return _EPOCH + timedelta(microseconds=created_us)


class IsoTimes:
    """``created_datetime(us).isoformat()`` at a fraction of its cost.

    The text up to the second is cached: consecutive batches share it.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, created_us: int) -> str:
        second, micros = divmod(created_us, 1_000_000)
        if second != self._second:
            self._second, self._prefix = second, (_EPOCH + timedelta(seconds=second)).isoformat()[:19]
        # isoformat() leaves out a zero fraction; keep the same text.
        return f"{self._prefix}.{micros:06d}+00:00" if micros else f"{self._prefix}+00:00"


def to_list(values: Any) -> list:
    """An array (NumPy or a list of tuples) as a list of Python values, one C call for NumPy."""
    return values.tolist() if hasattr(values, "tolist") else [list(v) if isinstance(v, tuple) else v for v in values]


def batch_columns(batch: PredictionBatch) -> tuple[list[int], list[list[int]], list[list[float]]]:
    """Predicted classes, top-3 class indices and probability rows as Python lists (one C call
    each for NumPy arrays, rather than a conversion per value)."""
    return to_list(batch.classes), to_list(batch.top3), to_list(batch.probs)


def batch_image(batch: PredictionBatch, i: int) -> tuple[str | None, int | None, int | None]:
    """(filename limited to MAX_FILENAME_CHARS, width, height) of image ``i``."""
    infos = batch.infos
    if infos is None:
        return None, None, None
    info = infos[i]
    return limit_filename(info.filename), info.width, info.height


def shadow_columns(batch: PredictionBatch) -> tuple[list[int], list[float]] | tuple[None, None]:
    """A shadow's class and confidence per image, or (None, None) without a shadow."""
    if batch.shadow_probs is None:
        return None, None
    probs = np.asarray(batch.shadow_probs)
    return probs.argmax(axis=1).tolist(), probs.max(axis=1).tolist()


def batch_records(batch: PredictionBatch) -> list[PredictionRecord]:
    """The batch as records (spool, tests and backends without a faster path)."""
    classes, top3, probs = batch_columns(batch)
    shadow_classes, shadow_confidences = shadow_columns(batch)
    names = batch.names
    created = created_datetime(batch.created_us)
    out = []
    for i, pid in enumerate(batch.ids):
        cls, row = classes[i], probs[i]
        filename, width, height = batch_image(batch, i)
        out.append(
            PredictionRecord(
                id=pid,
                created_at=created,
                model_version=batch.model_version,
                predicted_class=cls,
                label=names[cls],
                confidence=row[cls],
                top3=tuple((names[k], row[k]) for k in top3[i]),
                source=batch.source,
                filename=filename,
                image_width=width,
                image_height=height,
                latency_ms=batch.latency_ms,
                client_hash=batch.client_hash,
                arm=batch.arm,
                shadow_version=batch.shadow_version,
                shadow_class=None if shadow_classes is None else shadow_classes[i],
                shadow_confidence=None if shadow_confidences is None else shadow_confidences[i],
            )
        )
    return out


def record_to_dict(rec: PredictionRecord) -> dict[str, Any]:
    return {
        "id": str(rec.id),
        "created_at": utc(rec.created_at).isoformat(),
        "model_version": rec.model_version,
        "predicted_class": rec.predicted_class,
        "label": rec.label,
        "confidence": rec.confidence,
        "top3": [[name, prob] for name, prob in rec.top3],
        "source": rec.source,
        "filename": rec.filename,
        "image_width": rec.image_width,
        "image_height": rec.image_height,
        "latency_ms": rec.latency_ms,
        "client_hash": rec.client_hash,
        "true_label": rec.true_label,
        "arm": rec.arm,
        "shadow_version": rec.shadow_version,
        "shadow_class": rec.shadow_class,
        "shadow_confidence": rec.shadow_confidence,
    }


def _maybe(convert: Callable[[Any], Any], value: Any) -> Any:
    # None stays None: Cassandra returns an unset column as null.
    return None if value is None else convert(value)


def record_from_row(row: Mapping[str, Any]) -> PredictionRecord:
    """The record of a stored row, by column name.

    Each store's forms are accepted: ids as text or UUIDs, times as ISO text or (naive: UTC)
    datetimes, top3 as JSON text or a list of pairs. Columns a row may lack (rows of the schema
    before rollouts, lines spooled by older releases) read as None; a missing latency as 0.
    """
    pid, created, top3 = row["id"], row["created_at"], row.get("top3") or ()
    if isinstance(created, str):
        created = datetime.fromisoformat(created)
    if isinstance(top3, str):
        top3 = json.loads(top3)
    return PredictionRecord(
        id=pid if isinstance(pid, uuid.UUID) else uuid.UUID(pid),
        created_at=utc(created),
        model_version=row["model_version"],
        predicted_class=_maybe(int, row["predicted_class"]),
        label=row["label"],
        confidence=_maybe(float, row["confidence"]),
        top3=tuple((str(name), float(prob)) for name, prob in top3),
        source=row["source"],
        filename=row.get("filename"),
        image_width=row.get("image_width"),
        image_height=row.get("image_height"),
        latency_ms=float(row.get("latency_ms") or 0.0),
        client_hash=row.get("client_hash"),
        true_label=row.get("true_label"),
        arm=row.get("arm"),
        shadow_version=row.get("shadow_version"),
        shadow_class=row.get("shadow_class"),
        shadow_confidence=row.get("shadow_confidence"),
    )
