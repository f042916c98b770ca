from __future__ import annotations

from fashion_classifier.predlog.sqlite_schema import migrate_file


def test_migrate_is_versioned_and_idempotent(tmp_path):
    assert migrate_file(tmp_path / "m.sqlite3") == [1, 2]
    assert migrate_file(tmp_path / "m.sqlite3") == []
