"""RecentPredictions: the per-process memory of the last predictions, for feedback."""

from __future__ import annotations

import uuid

import pytest

from fashion_classifier.inference.classifier import RecentPredictions


def test_an_id_is_found_with_the_version_and_class_it_was_predicted_with():
    recent = RecentPredictions()
    first, second = [uuid.uuid1() for _ in range(3)], [uuid.uuid1() for _ in range(2)]
    recent.add(first, "v1", [3, 0, 9])
    recent.add(second, "v2", [1, 1])  # a hot reload in between
    assert [recent.get(pid) for pid in first] == [("v1", 3), ("v1", 0), ("v1", 9)]
    assert [recent.get(pid) for pid in second] == [("v2", 1), ("v2", 1)]
    assert recent.get(uuid.uuid1()) is None
    assert recent.get(uuid.UUID(int=first[0].int)) == ("v1", 3)  # equal ids, another object


def test_it_keeps_the_last_size_to_twice_size_predictions():
    recent = RecentPredictions(size=4)
    ids = [uuid.uuid1() for _ in range(11)]
    for i, pid in enumerate(ids):
        recent.add([pid], "v1" if i < 6 else "v2", [i % 10])
    kept = [pid for pid in ids if recent.get(pid) is not None]
    assert kept == ids[-7:]  # generations of 4: the full old one and 3 in the new one
    assert recent.get(ids[-1]) == ("v2", 0)


def test_ids_and_classes_must_pair_up():
    with pytest.raises(ValueError):
        RecentPredictions().add([uuid.uuid1()], "v1", [1, 2])


def test_the_classification_step_knows_nothing_of_http():
    """In a process of its own: importing it (and the input decoding) loads neither Flask nor Werkzeug."""
    import subprocess
    import sys

    check = """
import sys
import fashion_classifier.inference.batch, fashion_classifier.inference.classifier
assert not {"flask", "werkzeug"} & set(sys.modules), sorted(m for m in sys.modules if m in ("flask", "werkzeug"))
"""
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
