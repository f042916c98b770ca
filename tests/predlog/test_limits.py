from __future__ import annotations

from fashion_classifier.predlog.limits import MAX_FILENAME_CHARS, limit_record

from .conftest import make_record


def test_long_filenames_are_cut_and_marked():
    short = make_record(filename="x" * 10_240)
    assert limit_record(short) is short
    cut = limit_record(make_record(filename="y" * (MAX_FILENAME_CHARS + 5)))
    assert len(cut.filename) == MAX_FILENAME_CHARS and cut.filename.endswith("[truncated]")
