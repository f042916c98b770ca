"""Conversions shared by the backends: records to and from JSON-safe dicts, and the day bucket.

The spool stores items as JSON lines, so everything a backend writes must survive a round trip
through :func:`item_to_json` / :func:`item_from_json` unchanged. A :class:`PredictionBatch`
(one request's predictions, as queued by the web layer) is spooled as one line, its
probabilities as the array's raw bytes: the request thread spools a batch itself when the
in-memory queue is full, so spooling must cost far less than writing (about 1 µs a row, against
12 for a line per record), and replay then takes the backends' batch path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from fashion_classifier import timeuuid
from fashion_classifier.predlog.base import InvalidPageState, PredictionBatch, PredictionRecord

# uuid1 timestamps count 100 ns intervals since the Gregorian reform (1582-10-15).


@dataclass(frozen=True)
class Feedback:
    prediction_id: uuid.UUID
    true_label: int
    created_at: datetime


Item = PredictionRecord | Feedback | PredictionBatch

# Longer client filenames are cut: they are data only, and one row must stay far below the
# cluster's mutation size limit however many rows share a batch.
MAX_FILENAME_CHARS = 16_384
TRUNCATED_MARK = "…[truncated]"


def limit_filename(name: str | None) -> str | None:
    if name is not None and len(name) > MAX_FILENAME_CHARS:
        return name[: MAX_FILENAME_CHARS - len(TRUNCATED_MARK)] + TRUNCATED_MARK
    return name


def limit_record(rec: PredictionRecord) -> PredictionRecord:
    if rec.filename is not None and len(rec.filename) > MAX_FILENAME_CHARS:
        return replace(rec, filename=limit_filename(rec.filename))
    return rec


def item_rows(item: Item) -> int:
    """Predictions (or feedback rows) in one queued item."""
    return len(item.ids) if type(item) is PredictionBatch else 1


def _tolist(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else [list(v) if isinstance(v, tuple) else v for v in values]


def batch_columns(batch: PredictionBatch) -> tuple[list[int], list[list[int]], list[list[float]]]:
    """Predicted classes, top-3 class indices and probability rows as Python lists (one C call
    each for NumPy arrays; per-element conversion would cost ~1 µs per value)."""
    return _tolist(batch.classes), _tolist(batch.top3), _tolist(batch.probs)


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def created_datetime(created_us: int) -> datetime:
    """The aware UTC datetime of a batch's ``created_us`` (exact, no float rounding)."""
    return _EPOCH + timedelta(microseconds=created_us)


class IsoTimes:
    """``created_datetime(us).isoformat()`` at a fraction of its cost (~6 µs on a busy core).

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


_TICKS_PER_DAY = 86_400 * 10_000_000


class DayBuckets:
    """Day bucket of a uuid1 timestamp, computed once per day instead of once per row.

    Rows of a batch share a day except around midnight, so the last day's tick range is kept and
    a row costs two integer comparisons.
    """

    def __init__(self) -> None:
        self._start = self._end = -1
        self.day: date = date(1970, 1, 1)

    def of_ticks(self, ticks: int) -> date:
        if not self._start <= ticks < self._end:
            since_epoch = ticks - timeuuid.EPOCH_TICKS
            self._start = ticks - since_epoch % _TICKS_PER_DAY
            self._end = self._start + _TICKS_PER_DAY
            self.day = date(1970, 1, 1) + timedelta(days=since_epoch // _TICKS_PER_DAY)
        return self.day


def day_of(rec: PredictionRecord) -> date:
    """The day bucket of a record: the day of its timeuuid, so a lookup by id can find it.

    Falls back to ``created_at`` for ids that carry no time (not expected from the web layer).
    """
    return day_of_id(rec.id) or rec.created_at.astimezone(UTC).date()


def day_of_id(prediction_id: uuid.UUID) -> date | None:
    made = timeuuid.moment(prediction_id)
    return made.date() if made else None


def utc(moment: datetime) -> datetime:
    """Aware UTC datetime; naive values (as drivers return them) are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


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


def record_from_dict(data: dict[str, Any]) -> PredictionRecord:
    return PredictionRecord(
        id=uuid.UUID(data["id"]),
        created_at=utc(datetime.fromisoformat(data["created_at"])),
        model_version=data["model_version"],
        predicted_class=int(data["predicted_class"]),
        label=data["label"],
        confidence=float(data["confidence"]),
        top3=tuple((str(name), float(prob)) for name, prob in data.get("top3") or ()),
        source=data["source"],
        filename=data.get("filename"),
        image_width=data.get("image_width"),
        image_height=data.get("image_height"),
        latency_ms=float(data.get("latency_ms") or 0.0),
        client_hash=data.get("client_hash"),
        true_label=data.get("true_label"),
        arm=data.get("arm"),
        shadow_version=data.get("shadow_version"),
        shadow_class=data.get("shadow_class"),
        shadow_confidence=data.get("shadow_confidence"),
    )


class SpooledImage(NamedTuple):
    """An uploaded image's data kept with a spooled batch (the web layer's info objects)."""

    filename: str | None
    width: int | None
    height: int | None


def _array_to_dict(values: Any) -> dict[str, Any]:
    """A float array as its exact bytes (float32 as served), at a fraction of the cost of text."""
    values = np.asarray(values)
    values = values.astype(values.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": values.dtype.str,
        "shape": list(values.shape),
        "data": base64.b64encode(values.tobytes()).decode("ascii"),
    }


def _array_from_dict(spec: dict[str, Any]) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(spec["data"], validate=True), dtype=np.dtype(spec["dtype"]))
    return values.reshape(spec["shape"])


def _batch_to_dict(batch: PredictionBatch) -> dict[str, Any]:
    infos = batch.infos
    return {
        "kind": "batch",
        "rows": len(batch.ids),  # first after kind: the spool counts rows from the line's start
        "ids": [str(pid) for pid in batch.ids],
        "created_us": batch.created_us,
        "model_version": batch.model_version,
        "names": list(batch.names),
        "classes": _tolist(batch.classes),
        "top3": _tolist(batch.top3),
        "probs": _array_to_dict(batch.probs),
        "source": batch.source,
        "infos": None
        if infos is None
        else [[limit_filename(info.filename), info.width, info.height] for info in infos],
        "latency_ms": batch.latency_ms,
        "client_hash": batch.client_hash,
        "arm": batch.arm,
        "shadow_version": batch.shadow_version,
        "shadow_probs": None if batch.shadow_probs is None else _array_to_dict(batch.shadow_probs),
    }


def _batch_from_dict(data: dict[str, Any]) -> PredictionBatch:
    ids = [uuid.UUID(pid) for pid in data["ids"]]
    probs = _array_from_dict(data["probs"])
    # Lines spooled before rollouts have no arm and no shadow.
    arm, shadow_version, shadow = data.get("arm"), data.get("shadow_version"), data.get("shadow_probs")
    shadow_probs = None if shadow is None else _array_from_dict(shadow)
    classes, top3 = [int(c) for c in data["classes"]], [[int(k) for k in row] for row in data["top3"]]
    names = tuple(str(name) for name in data["names"])
    infos = data["infos"]
    # A line that decodes but cannot be written would block its file's replay for good: refuse it
    # here, where an unreadable line is skipped with a warning.
    if not len(ids) == len(classes) == len(top3) == len(probs) or (infos is not None and len(infos) != len(ids)):
        raise ValueError("a spooled batch's columns differ in length")
    known = range(len(names))
    if probs.dtype.kind != "f" or probs.ndim != 2 or probs.shape[1] != len(names) or not all(
        c in known and all(k in known for k in top) for c, top in zip(classes, top3, strict=True)
    ):
        raise ValueError("a spooled batch's classes do not match its class names")
    if shadow_probs is not None and (shadow_probs.dtype.kind != "f" or shadow_probs.shape != probs.shape):
        raise ValueError("a spooled batch's shadow probabilities do not match its probabilities")
    if infos is not None:
        infos = [SpooledImage(*info) for info in infos]
        if not all(_image_ok(info) for info in infos):
            raise ValueError("a spooled batch's image data has the wrong types")
    created_us, version, source, client = data["created_us"], data["model_version"], data["source"], data["client_hash"]
    if not (
        type(created_us) is int
        and 0 <= created_us < 2**62
        and isinstance(version, str)
        and isinstance(source, str)
        and (client is None or isinstance(client, str))
        and all(value is None or isinstance(value, str) for value in (arm, shadow_version))
    ):
        raise ValueError("a spooled batch's request data has the wrong types")
    return PredictionBatch(
        ids=ids,
        created_us=created_us,
        model_version=version,
        names=names,
        classes=classes,
        top3=top3,
        probs=probs,
        source=source,
        infos=infos,
        latency_ms=float(data["latency_ms"]),
        client_hash=client,
        arm=arm,
        shadow_version=shadow_version,
        shadow_probs=shadow_probs,
    )


_INT32 = range(-(2**31), 2**31)


def _image_ok(info: SpooledImage) -> bool:
    return (info.filename is None or isinstance(info.filename, str)) and all(
        size is None or (type(size) is int and size in _INT32) for size in (info.width, info.height)
    )


_BATCH_PREFIX = b'{"kind":"batch","rows":'


def line_rows(raw: bytes) -> int:
    """Rows in one spool line, read from its start without decoding it (1 for any other line)."""
    if raw.startswith(_BATCH_PREFIX):
        end = raw.find(b",", len(_BATCH_PREFIX))
        try:
            return int(raw[len(_BATCH_PREFIX) : end])
        except ValueError:
            return 1
    return 1


def item_to_json(item: Item) -> str:
    if type(item) is PredictionBatch:
        body = _batch_to_dict(item)
    elif isinstance(item, Feedback):
        body = {
            "kind": "feedback",
            "id": str(item.prediction_id),
            "true_label": item.true_label,
            "created_at": utc(item.created_at).isoformat(),
        }
    else:
        body = {"kind": "prediction", **record_to_dict(item)}
    # ensure_ascii keeps every line free of raw newlines and odd code points (e.g. U+2028).
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"))


def item_from_json(line: str) -> Item:
    data = json.loads(line)
    kind = data.get("kind")
    if kind == "batch":
        return _batch_from_dict(data)
    if kind == "feedback":
        return Feedback(
            prediction_id=uuid.UUID(data["id"]),
            true_label=int(data["true_label"]),
            created_at=utc(datetime.fromisoformat(data["created_at"])),
        )
    return record_from_dict(data)


def encode_token(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """The payload of a page_state token; InvalidPageState for anything else."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise InvalidPageState("page_state is not a token issued by this service") from None
    if not isinstance(payload, dict):
        raise InvalidPageState("page_state is not a token issued by this service")
    return payload


_MAC_BYTES = 16


def token_key(*secrets: str) -> bytes:
    """The HMAC key of signed page tokens, derived from the deployment's secrets."""
    return hashlib.sha256("\0".join(("fashion-classifier page token", *secrets)).encode()).digest()


def encode_signed_token(payload: dict[str, Any], key: bytes) -> str:
    """A page token a client cannot alter: the payload with an HMAC-SHA256 tag (16 bytes)."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    tag = hmac.new(key, raw, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(tag + raw).decode().rstrip("=")


def decode_signed_token(token: str, key: bytes) -> dict[str, Any]:
    """The payload of a token from :func:`encode_signed_token`; InvalidPageState for anything else."""
    try:
        data = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode("ascii"))
    except (ValueError, UnicodeError):
        raise InvalidPageState("page_state is not a token issued by this service") from None
    tag, raw = data[:_MAC_BYTES], data[_MAC_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(key, raw, hashlib.sha256).digest()[:_MAC_BYTES]):
        raise InvalidPageState("page_state is not a token issued by this service")
    payload = json.loads(raw)
    if not isinstance(payload, dict):
        raise InvalidPageState("page_state is not a token issued by this service")
    return payload
