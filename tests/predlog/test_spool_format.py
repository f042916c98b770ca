"""The spool's lines: every item reads back as written; a PredictionBatch as one line, to the bit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest

from fashion_classifier.predlog.base import PredictionBatch
from fashion_classifier.predlog.items import Feedback, item_rows
from fashion_classifier.predlog.limits import MAX_FILENAME_CHARS
from fashion_classifier.predlog.records import batch_records
from fashion_classifier.predlog.spool_format import item_from_json, item_to_json
from fashion_classifier.predlog.sqlite_sink import _BatchRows

from .conftest import make_batch, make_record


def test_record_survives_a_json_line_round_trip():
    rec = make_record(3, filename="a\"b'c\n\u2028../日本.png", true_label=4)
    line = item_to_json(rec)
    assert "\n" not in line and "\u2028" not in line
    assert item_from_json(line) == rec
    assert item_from_json(line).true_label == 4


def test_feedback_round_trip():
    fb = Feedback(uuid.uuid1(), 7, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert item_from_json(item_to_json(fb)) == fb


def _sqlite_rows(batch: PredictionBatch) -> list[tuple]:
    rows: list[tuple] = []
    _BatchRows().extend(rows, batch)
    return rows


@pytest.mark.parametrize(("infos", "shadow"), [(True, False), (False, False), (True, True)])
def test_a_spooled_batch_reads_back_as_the_same_rows(infos, shadow):
    batch = make_batch(6, infos=infos, shadow=shadow)
    line = item_to_json(batch)
    assert "\n" not in line and "\u2028" not in line and line.isascii()
    back = item_from_json(line)
    assert type(back) is PredictionBatch and item_rows(back) == 6
    assert _sqlite_rows(back) == _sqlite_rows(batch)  # every stored column, probabilities to the bit
    assert batch_records(back) == batch_records(batch)
    assert np.asarray(back.probs).dtype == np.float32


def test_a_spooled_batch_keeps_float64_list_probabilities_exactly():
    batch = make_batch(3)._replace(probs=[[0.1, 0.2, 0.7] + [0.0] * 7] * 3, classes=[2, 2, 2], top3=[(2, 1, 0)] * 3)
    assert batch_records(item_from_json(item_to_json(batch))) == batch_records(batch)


def test_a_spooled_batch_line_is_bounded_like_its_records():
    batch = make_batch(2)
    long = batch._replace(infos=[type(batch.infos[0])("n" * 100_000, 28, 28)] * 2)
    line = item_to_json(long)
    assert len(line) < 2 * MAX_FILENAME_CHARS + 2_000
    assert batch_records(item_from_json(line)) == batch_records(long)  # both cut to the same name


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(classes=d["classes"][:-1]),
        lambda d: d.update(ids=["not a uuid"] * len(d["ids"])),
        lambda d: d["probs"].update(data="!!not base64!!"),
        lambda d: d["probs"].update(shape=[1, 2, 3]),
        lambda d: d["probs"].update(shape=[40]),
        lambda d: d.update(classes=[10] * len(d["classes"])),
        lambda d: d.update(top3=[[0, 1, -1]] * len(d["top3"])),
        lambda d: d.update(names=d["names"][:5]),
        lambda d: d["probs"].update(dtype="|S4"),
        lambda d: d.update(infos=[[7, 28, 28]] * len(d["ids"])),
        lambda d: d.update(infos=[["a.png", 2**40, 28]] * len(d["ids"])),
        lambda d: d.update(created_us=1e400),
        lambda d: d.update(model_version=5),
        lambda d: d.update(client_hash=["x"]),
        lambda d: d.pop("model_version"),
        lambda d: d["shadow_probs"].update(shape=[2, 20]),
        lambda d: d["shadow_probs"].update(dtype="<i4"),
        lambda d: d.update(arm=1),
        lambda d: d.update(shadow_version=["v"]),
    ],
)
def test_a_damaged_batch_line_is_refused_not_misread(change):
    data = json.loads(item_to_json(make_batch(4, shadow=True)))
    change(data)
    with pytest.raises((ValueError, KeyError, TypeError)):
        item_from_json(json.dumps(data).replace("Infinity", "1e400"))


def test_a_batch_spooled_before_rollouts_reads_back_without_arm_or_shadow():
    batch = make_batch(3)
    data = json.loads(item_to_json(batch))
    for key in ("arm", "shadow_version", "shadow_probs"):
        data.pop(key)
    back = item_from_json(json.dumps(data))
    assert batch_records(back) == batch_records(batch)
    assert {(r.arm, r.shadow_version, r.shadow_class) for r in batch_records(back)} == {(None, None, None)}
