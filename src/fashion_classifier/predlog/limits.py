"""How long a client's filename may be: longer ones are cut, with a mark, before they are queued.

Filenames are data only, and one row must stay far below the cluster's mutation size limit
however many rows share a batch.
"""

from __future__ import annotations

from dataclasses import replace

from fashion_classifier.predlog.base import PredictionRecord

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
