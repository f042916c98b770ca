from __future__ import annotations

import multiprocessing
import os

from fashion_classifier.predlog.spool import Spool

from .conftest import make_record


def _write_and_die(directory, count):
    spool = Spool(directory)
    spool.append([make_record(i) for i in range(count)])
    spool.sync()
    os._exit(0)  # no close(): the lock goes with the process, as when a worker is killed


def test_a_live_writers_file_is_not_claimed(tmp_path):
    writer = Spool(tmp_path)
    recs = [make_record(1), make_record(2)]
    writer.append(recs)
    other = Spool(tmp_path)  # another fd, another flock: like another process
    assert list(other.claim()) == []
    writer.rotate()  # rotated out: now claimable
    claimed = list(other.claim())
    assert len(claimed) == 1 and claimed[0].rows == 2
    items = [i for chunk in claimed[0].chunks(10) for i in chunk]
    assert items == recs
    claimed[0].done()
    assert list(tmp_path.glob("*.jsonl")) == []


def test_files_of_dead_writers_are_claimed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_write_and_die, args=(tmp_path, 5))
    proc.start()
    proc.join(10)
    assert proc.exitcode == 0
    claimed = list(Spool(tmp_path).claim())
    assert [c.rows for c in claimed] == [5]
    assert sum(len(chunk) for chunk in claimed[0].chunks(2)) == 5
    claimed[0].release()  # replay failed: the file stays for later
    assert len(list(tmp_path.glob("*.jsonl"))) == 1


def test_a_torn_last_line_is_skipped(tmp_path):
    spool = Spool(tmp_path)
    recs = [make_record(i) for i in range(3)]
    spool.append(recs)
    spool.rotate()
    path = next(tmp_path.glob("*.jsonl"))
    with open(path, "ab") as fh:
        fh.write(b'{"kind":"prediction","id":"12')  # the writer died mid-line
    claimed = list(Spool(tmp_path).claim())
    items = [i for chunk in claimed[0].chunks(100) for i in chunk]
    assert [i.id for i in items] == [r.id for r in recs]


def test_a_file_removed_by_another_replayer_is_not_replayed_twice(tmp_path):
    spool = Spool(tmp_path)
    spool.append([make_record(1)])
    spool.rotate()
    first = list(Spool(tmp_path).claim())
    second_spool = Spool(tmp_path)
    pending = second_spool.claim()
    first[0].done()
    assert list(pending) == []
