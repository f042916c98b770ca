"""The writer's queue/spool/replay logic against a scripted in-memory sink (the real backends
have their own tests)."""

from __future__ import annotations

import json
import threading
import time

from fashion_classifier.predlog import metrics
from fashion_classifier.predlog.writer import AsyncWriter

from .conftest import make_batch, make_record


class ScriptedSink:
    def __init__(self) -> None:
        self.up = True
        self.fail = False
        self.hold = threading.Event()
        self.hold.set()
        self.written: list = []
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return self.up

    def write(self, items, done) -> None:
        def finish():
            self.hold.wait()
            if self.fail:
                done(list(items))
                return
            with self.lock:
                self.written.extend(items)
            done([])

        threading.Thread(target=finish, daemon=True).start()

    def close(self) -> None:
        pass


def _wait(predicate, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _writer(tmp_path, sink, **kw) -> AsyncWriter:
    size = kw.pop("queue_size", 100)
    return AsyncWriter(lambda: sink, tmp_path / "spool", size, replay_interval=0.1, replay_timeout=1.0, **kw)


def test_records_are_written_and_flush_waits_for_them(tmp_path):
    sink = ScriptedSink()
    writer = _writer(tmp_path, sink, queue_size=1000)
    recs = [make_record(i) for i in range(520)]
    for rec in recs:
        writer.submit(rec)
    assert writer.flush(10)
    assert sorted(r.id for r in sink.written) == sorted(r.id for r in recs)
    writer.close()
    assert list((tmp_path / "spool").glob("*.ndjson")) == []


def test_backend_down_spools_then_replays_everything_once(tmp_path):
    sink = ScriptedSink()
    sink.up = False
    writer = _writer(tmp_path, sink)
    recs = [make_record(i) for i in range(30)]
    for rec in recs:
        writer.submit(rec)
    assert writer.flush(10)
    assert sink.written == []
    assert sum(1 for p in (tmp_path / "spool").glob("*.ndjson") for _ in p.open()) == 30
    sink.up = True
    assert _wait(lambda: len(sink.written) == 30)
    assert sorted(r.id for r in sink.written) == sorted(r.id for r in recs)
    assert _wait(lambda: list((tmp_path / "spool").glob("*.ndjson")) == [])
    writer.close()


def test_spooled_batches_are_replayed_as_batches_and_counted_as_rows(tmp_path):
    sink = ScriptedSink()
    sink.up = False
    writer = _writer(tmp_path, sink, batch_size=10)
    batches = [make_batch(7, seed=i) for i in range(3)]
    replayed = metrics.REPLAYED._value.get()
    for batch in batches:
        writer.submit(batch, 7)
    assert writer.flush(10)
    sink.up = True
    assert _wait(lambda: len(sink.written) == 3)
    assert [b.ids for b in sink.written] == [b.ids for b in batches]
    assert _wait(lambda: metrics.REPLAYED._value.get() - replayed == 21)  # counted after done()
    writer.close()


def test_failed_writes_are_spooled_and_replayed(tmp_path):
    sink = ScriptedSink()
    sink.fail = True
    writer = _writer(tmp_path, sink)
    recs = [make_record(i) for i in range(10)]
    for rec in recs:
        writer.submit(rec)
    assert writer.flush(10)
    sink.fail = False
    assert _wait(lambda: sorted(r.id for r in sink.written) == sorted(r.id for r in recs))
    writer.close()


def test_a_full_queue_or_a_slow_backend_never_blocks_submit(tmp_path):
    sink = ScriptedSink()
    sink.hold.clear()  # every write hangs
    writer = _writer(tmp_path, sink, queue_size=5, max_in_flight=1, slow_after=0.2)
    recs = [make_record(i) for i in range(200)]
    started = time.monotonic()
    for rec in recs:
        writer.submit(rec)
    assert time.monotonic() - started < 1.0
    assert _wait(lambda: writer.queued_rows == 0)
    sink.hold.set()
    assert _wait(lambda: len({r.id for r in sink.written}) == 200, timeout=20)
    writer.close()


def test_close_spools_what_could_not_be_written(tmp_path):
    sink = ScriptedSink()
    sink.hold.clear()
    writer = _writer(tmp_path, sink, max_in_flight=1, slow_after=30)
    for i in range(20):
        writer.submit(make_record(i))
    writer.close(timeout=0.5)
    lines = sum(1 for p in (tmp_path / "spool").glob("*.ndjson") for _ in p.open())
    assert lines == 20  # queued and unanswered items alike


class _DownSink:
    def writable(self) -> bool:
        return False

    def write(self, items, done) -> None:
        done(items)

    def close(self) -> None:
        pass


def test_batches_count_as_rows_in_the_bounded_queue_and_spool_as_one_line_each(tmp_path):
    writer = AsyncWriter(_DownSink, tmp_path / "spool", queue_size=10, replay_interval=60)
    try:
        writer.submit(make_batch(8), 8)
        writer.submit(make_batch(8, seed=1), 8)  # would exceed 10 rows: spooled at once
        assert writer.queued_rows == 8
        assert writer.flush(10)
        assert metrics.SPOOL_ROWS._value.get() == 16
    finally:
        writer.close()
    lines = [json.loads(line) for p in (tmp_path / "spool").glob("*.ndjson") for line in p.open()]
    assert [(line["kind"], line["rows"]) for line in lines] == [("batch", 8), ("batch", 8)]


def test_a_failed_write_is_spooled_even_when_the_backend_returns_an_item_twice(tmp_path):
    class TwiceSink(_DownSink):
        def writable(self) -> bool:
            return True

        def write(self, items, done) -> None:
            done([*items, *items])

    writer = AsyncWriter(TwiceSink, tmp_path / "spool", queue_size=100, replay_interval=60)
    try:
        writer.submit(make_batch(5), 5)
        assert writer.flush(10)
    finally:
        writer.close()
    assert sum(1 for p in (tmp_path / "spool").glob("*.ndjson") for _ in p.open()) == 2
