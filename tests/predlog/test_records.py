"""Records of a PredictionBatch (every prediction of the request, its shadow's beside) and of stored rows."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_classifier.predlog.items import item_rows
from fashion_classifier.predlog.limits import MAX_FILENAME_CHARS
from fashion_classifier.predlog.records import IsoTimes, batch_records, created_datetime, record_from_row

from .conftest import NAMES, make_batch


def test_batch_records_hold_every_prediction():
    batch = make_batch(4)
    recs = batch_records(batch)
    assert [r.id for r in recs] == batch.ids
    probs = batch.probs.tolist()
    for i, rec in enumerate(recs):
        cls = int(batch.classes[i])
        assert (rec.predicted_class, rec.label, rec.confidence) == (cls, NAMES[cls], probs[i][cls])
        assert rec.top3 == tuple((NAMES[k], probs[i][k]) for k in batch.top3[i].tolist())
        assert rec.created_at == created_datetime(batch.created_us)
        assert rec.filename is None or len(rec.filename) <= MAX_FILENAME_CHARS
    assert item_rows(batch) == 4 and item_rows(recs[0]) == 1


@pytest.mark.parametrize("micros", [0, 1, 999_999, 123_456])
def test_iso_times_match_isoformat(micros):
    times = IsoTimes()
    for second in (1_764_684_000, 1_764_684_001, 0):
        us = second * 1_000_000 + micros
        assert times.iso(us) == created_datetime(us).isoformat()


def test_a_shadow_batch_records_the_candidates_class_and_confidence():
    batch = make_batch(4, shadow=True)
    for i, rec in enumerate(batch_records(batch)):
        assert rec.arm == "current" and rec.shadow_version == batch.shadow_version
        assert rec.shadow_class == int(np.argmax(batch.shadow_probs[i]))
        assert rec.shadow_confidence == pytest.approx(float(np.max(batch.shadow_probs[i])))
        assert rec.shadow_class == (rec.predicted_class + 1) % 10  # make_batch's shadow is shifted by one


def test_a_row_each_store_writes_reads_back_in_one_shape():
    sqlite_row = {
        "id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "created_at": "2026-12-07T10:00:00+00:00",
        "model_version": "v1",
        "predicted_class": "3",
        "label": "Dress",
        "confidence": "0.5",
        "top3": '[["Dress", 0.5]]',
        "source": "api",
    }
    rec = record_from_row(sqlite_row)
    assert (rec.predicted_class, rec.confidence, rec.top3) == (3, 0.5, (("Dress", 0.5),))
    assert rec.created_at.isoformat() == "2026-12-07T10:00:00+00:00" and rec.latency_ms == 0


def test_null_columns_read_as_none_not_an_error():
    # Cassandra returns an unset column as null; such a value reads as None, as the Cassandra reader always did.
    row = {
        "id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "created_at": "2026-12-07T10:00:00+00:00",
        "model_version": None,
        "predicted_class": None,
        "label": None,
        "confidence": None,
        "source": None,
    }
    rec = record_from_row(row)
    assert (rec.predicted_class, rec.confidence, rec.top3) == (None, None, ())
