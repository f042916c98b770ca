from __future__ import annotations

import multiprocessing
import os

from fashion_classifier.predlog.base import PredictionBatch
from fashion_classifier.predlog.items import item_rows
from fashion_classifier.predlog.spool import Spool
from fashion_classifier.predlog.spool_format import item_to_json

from .conftest import make_batch, make_record


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
    assert list(tmp_path.glob("*.ndjson")) == []


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
    assert len(list(tmp_path.glob("*.ndjson"))) == 1


def test_a_torn_last_line_is_skipped(tmp_path):
    spool = Spool(tmp_path)
    recs = [make_record(i) for i in range(3)]
    spool.append(recs)
    spool.rotate()
    path = next(tmp_path.glob("*.ndjson"))
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


def test_rows_are_counted_and_chunked_by_rows_with_batches_as_one_line(tmp_path):
    spool = Spool(tmp_path)
    batch = make_batch(300)
    recs = [make_record(i) for i in range(3)]
    spool.append([recs[0], batch, *recs[1:]])
    spool.rotate()
    (claimed,) = Spool(tmp_path).claim()
    assert claimed.rows == 303
    assert len(claimed.path.read_bytes().splitlines()) == 4
    chunks = list(claimed.chunks(200))
    assert [len(chunk) for chunk in chunks] == [2, 2]  # the record and the batch reach 200 rows
    assert [item_rows(i) for chunk in chunks for i in chunk] == [1, 300, 1, 1]
    claimed.done()


def test_files_of_earlier_versions_are_still_replayed(tmp_path):
    """Versions before batch lines wrote ``.jsonl`` files of records; they are claimed too, and new
    files get another suffix, which those versions (after a rollback) do not claim."""
    recs = [make_record(i) for i in range(2)]
    (tmp_path / "old-host-1-abcd1234.jsonl").write_text("".join(item_to_json(r) + "\n" for r in recs))
    spool = Spool(tmp_path)
    spool.append([make_batch(2)])
    spool.rotate()
    assert {p.suffix for p in tmp_path.iterdir()} == {".jsonl", ".ndjson"}
    claimed = list(Spool(tmp_path).claim())
    assert sorted(c.rows for c in claimed) == [2, 2]
    items = [i for c in claimed for chunk in c.chunks(10) for i in chunk]
    assert [i for i in items if type(i) is not PredictionBatch] == recs
    for c in claimed:
        c.done()
    assert list(tmp_path.iterdir()) == []


def test_a_torn_batch_line_is_skipped_and_counted_by_the_rows_it_states(tmp_path):
    spool = Spool(tmp_path)
    spool.append([make_record(0)])
    spool.rotate()
    path = next(tmp_path.glob("*.ndjson"))
    with open(path, "ab") as fh:
        fh.write(item_to_json(make_batch(50)).encode()[:300])  # the writer died mid-line
    (claimed,) = Spool(tmp_path).claim()
    assert claimed.rows == 51  # the gauge's estimate: the line says 50 rows before it breaks
    assert [item_rows(i) for chunk in claimed.chunks(100) for i in chunk] == [1]
