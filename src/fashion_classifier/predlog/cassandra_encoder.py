"""The bound values of the prediction insert, from a PredictionBatch or a PredictionRecord.

Binding through the driver costs ~14 Python-level serializer calls per row; most values of a
batch repeat (day, bucket, created_at, model version, labels, source, client hash, image size),
so :class:`Encoder` serializes them once, as the driver would (native protocol v5, same bytes:
tests compare them with the driver's own serializers), and a row costs a few ``struct`` packs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import date

from cassandra.query import UNSET_VALUE

from fashion_classifier.predlog.base import PredictionBatch, PredictionRecord
from fashion_classifier.predlog.cassandra_buckets import Placer, bucket_bytes, place
from fashion_classifier.predlog.limits import limit_filename
from fashion_classifier.predlog.records import batch_columns, shadow_columns

# Columns of a prediction after the partition key, in insert order: those of migration 1's
# predictions_by_day, then those a rollout adds (predictions_by_bucket has them all).
LEGACY_COLUMNS = (
    "id, created_at, model_version, predicted_class, label, confidence, top3, source, "
    "filename, image_width, image_height, latency_ms, client_hash"
)
COLUMNS = f"{LEGACY_COLUMNS}, arm, shadow_version, shadow_class, shadow_confidence"
COLUMN_NAMES = tuple(COLUMNS.split(", "))
FILENAME = 10  # index of the filename among the insert's values

_int32 = struct.Struct(">i").pack
_int64 = struct.Struct(">q").pack
_double = struct.Struct(">d").pack
_THREE = _int32(3)
_DOUBLE_LENGTH = _int32(8)


class Encoder:
    """Serialized insert values of a batch's rows, with caches shared across batches."""

    def __init__(self) -> None:
        self._placer = Placer()
        self._buckets: dict[int, bytes] = {}
        self._text: dict[str, bytes] = {}
        self._small_ints: dict[int, bytes] = {}
        self._names: object = None
        self._labels: list[bytes] = []
        self._top_items: list[bytes] = []  # per class: tuple length, label length, label, double length

    def text(self, value: str) -> bytes:
        encoded = self._text.get(value)
        if encoded is None:
            if len(self._text) > 4096:  # filenames may all differ: keep the cache small
                self._text.clear()
            encoded = self._text[value] = value.encode("utf-8")
        return encoded

    def integer(self, value: int) -> bytes:
        encoded = self._small_ints.get(value)
        if encoded is None:
            if len(self._small_ints) > 4096:
                self._small_ints.clear()
            encoded = self._small_ints[value] = _int32(value)
        return encoded

    def _bucket(self, bucket: int) -> bytes:
        encoded = self._buckets.get(bucket)
        if encoded is None:
            if len(self._buckets) > 4096:
                self._buckets.clear()
            encoded = self._buckets[bucket] = bucket_bytes(bucket)
        return encoded

    def _set_names(self, names) -> None:
        self._names = names
        self._labels = [name.encode("utf-8") for name in names]
        self._top_items = [
            _int32(4 + len(label) + 4 + 8) + _int32(len(label)) + label + _DOUBLE_LENGTH for label in self._labels
        ]

    def _top3(self, top: list[int], row: list[float]) -> bytes:
        items = self._top_items
        if len(top) == 3:
            a, b, c = top
            return b"".join((_THREE, items[a], _double(row[a]), items[b], _double(row[b]), items[c], _double(row[c])))
        parts = [_int32(len(top))]
        for k in top:
            parts += (items[k], _double(row[k]))
        return b"".join(parts)

    def rows(self, batch: PredictionBatch) -> Iterator[tuple[date, int, list]]:
        """(day, bucket, serialized values in the insert's order) per prediction of the batch."""
        classes, top3, probs = batch_columns(batch)
        if batch.names is not self._names:  # the model's class names: the same object batch after batch
            self._set_names(batch.names)
        labels, integer, placer = self._labels, self.integer, self._placer
        created = _int64(batch.created_us // 1000)  # CQL timestamp: milliseconds
        version = self.text(batch.model_version)
        source = self.text(batch.source)
        latency = _double(batch.latency_ms)
        client = UNSET_VALUE if batch.client_hash is None else self.text(batch.client_hash)
        arm = UNSET_VALUE if batch.arm is None else self.text(batch.arm)
        shadow_version = UNSET_VALUE if batch.shadow_version is None else self.text(batch.shadow_version)
        shadow_classes, shadow_confidences = shadow_columns(batch)
        infos = batch.infos
        for i, pid in enumerate(batch.ids):
            bucket = placer.bucket(pid)
            cls, row = classes[i], probs[i]
            if infos is None:
                filename = width = height = UNSET_VALUE
            else:
                info = infos[i]
                name = limit_filename(info.filename)
                filename = UNSET_VALUE if name is None else self.text(name)
                width = UNSET_VALUE if info.width is None else integer(info.width)
                height = UNSET_VALUE if info.height is None else integer(info.height)
            if shadow_classes is None:
                shadow_class = shadow_confidence = UNSET_VALUE
            else:
                shadow_class, shadow_confidence = integer(shadow_classes[i]), _double(shadow_confidences[i])
            yield (
                placer.day,
                bucket,
                [
                    placer.day_value,
                    self._bucket(bucket),
                    pid.bytes,
                    created,
                    version,
                    integer(cls),
                    labels[cls],
                    _double(row[cls]),
                    self._top3(top3[i], row),
                    source,
                    filename,
                    width,
                    height,
                    latency,
                    client,
                    arm,
                    shadow_version,
                    shadow_class,
                    shadow_confidence,
                ],
            )


def _optional(value):
    # A bound null writes a tombstone; an unset value writes nothing.
    return UNSET_VALUE if value is None else value


def record_values(rec: PredictionRecord) -> tuple:
    """The insert's values of a record (spool replays), bound by the driver."""
    day, bucket = place(rec.id)
    return (
        day,
        bucket,
        rec.id,
        rec.created_at,
        rec.model_version,
        rec.predicted_class,
        rec.label,
        rec.confidence,
        [(name, float(prob)) for name, prob in rec.top3],
        rec.source,
        _optional(rec.filename),
        _optional(rec.image_width),
        _optional(rec.image_height),
        rec.latency_ms,
        _optional(rec.client_hash),
        _optional(rec.arm),
        _optional(rec.shadow_version),
        _optional(rec.shadow_class),
        _optional(rec.shadow_confidence),
    )
