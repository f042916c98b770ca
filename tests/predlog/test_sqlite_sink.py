"""The SQLite sink: a batch's rows equal its records' rows; a failed write returns its items."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.records import batch_records
from fashion_classifier.predlog.sqlite_sink import SqliteSink, _BatchRows, _row

from .conftest import make_batch, make_record


@pytest.mark.parametrize("shadow", [False, True])
def test_sqlite_rows_of_a_batch_equal_the_rows_of_its_records(shadow):
    batch = make_batch(7, shadow=shadow)
    rows: list[tuple] = []
    _BatchRows().extend(rows, batch)
    expected = [_row(rec) for rec in batch_records(batch)]
    assert len(rows) == 7
    for got, want in zip(rows, expected, strict=True):
        assert got[:8] == want[:8] and got[9:] == want[9:]
        assert json.loads(got[8]) == json.loads(want[8])  # same JSON, spacing aside


def test_sqlite_rows_with_nan_probabilities_stay_valid_json():
    batch = make_batch(1)
    batch.probs[0, :] = np.nan
    rows: list[tuple] = []
    _BatchRows().extend(rows, batch)
    assert len(json.loads(rows[0][8])) == 3


def test_a_failed_write_reports_disconnected_and_returns_the_items(tmp_path):
    sink = SqliteSink(tmp_path / "log.sqlite3")
    assert metrics.CONNECTED._value.get() == 1
    sink.close()  # every statement now fails with sqlite3.ProgrammingError
    items = [make_record(0)]
    failed: list = []
    sink.write(items, failed.extend)
    assert failed == items
    assert metrics.CONNECTED._value.get() == 0
