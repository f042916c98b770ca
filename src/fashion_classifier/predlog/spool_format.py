"""The spool's line format: one queued item as one line of ASCII JSON, and back.

Everything a backend writes must survive a round trip through :func:`item_to_json` /
:func:`item_from_json` unchanged. A :class:`PredictionBatch` (one request's predictions, as
queued by the web layer) is spooled as one line, its probabilities as the array's raw bytes: the
request thread spools a batch itself when the in-memory queue is full, so spooling must cost far
less than writing, and replay then takes the backends' batch path.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from fashion_classifier.predlog.base import PredictionBatch
from fashion_classifier.predlog.items import Feedback, Item
from fashion_classifier.predlog.limits import limit_filename
from fashion_classifier.predlog.records import record_from_row, record_to_dict, to_list, utc


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
        "classes": to_list(batch.classes),
        "top3": to_list(batch.top3),
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
    if (
        probs.dtype.kind != "f"
        or probs.ndim != 2
        or probs.shape[1] != len(names)
        or not all(c in known and all(k in known for k in top) for c, top in zip(classes, top3, strict=True))
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
    return record_from_row(data)
