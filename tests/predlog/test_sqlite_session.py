from __future__ import annotations

import multiprocessing
import sqlite3
import time

from fashion_classifier.predlog.sqlite_session import connect


def _open_at(path, start_at):
    while time.time() < start_at:
        pass
    connect(path).close()


def test_processes_opening_a_new_file_at_once_all_get_wal(tmp_path):
    # SQLite does not wait on the busy timeout to switch to WAL: two gunicorn workers opening a
    # new log at the same moment failed 4 times in 30 before connect() retried.
    ctx = multiprocessing.get_context("fork")
    for trial in range(12):
        path = tmp_path / f"new-{trial}.sqlite3"
        start_at = time.time() + 0.2
        procs = [ctx.Process(target=_open_at, args=(path, start_at)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0, 0, 0], f"trial {trial}"
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
