"""The count of serving gRPC processes, as the master records it and the workers read it."""

from __future__ import annotations

from fashion_classifier.config import MULTIPROC_ENV
from fashion_classifier.server import grpc_status, runtime


def test_the_count_written_is_the_count_read(tmp_path):
    grpc_status.write(tmp_path, 2)
    assert grpc_status.serving(tmp_path) == 2
    grpc_status.write(tmp_path, 0)
    assert grpc_status.serving(tmp_path) == 0
    assert [p.name for p in tmp_path.iterdir()] == [grpc_status.FILE_NAME]  # no partial file left


def test_nothing_recorded_reads_none(tmp_path, monkeypatch):
    assert grpc_status.serving(tmp_path) is None  # no gRPC server: readiness ignores it
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    assert grpc_status.serving() is None
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    grpc_status.write(tmp_path, 1)
    assert grpc_status.serving() == 1


def test_a_kept_directory_forgets_the_previous_runs_count_at_startup(tmp_path):
    # A run that stopped while no gRPC server served left 0: the next run, without gRPC, would
    # never be ready.
    grpc_status.write(tmp_path, 0)
    (tmp_path / "counter_1.db").write_bytes(b"")
    assert runtime.prepare_metrics_dir({MULTIPROC_ENV: str(tmp_path)}) == tmp_path
    assert grpc_status.serving(tmp_path) is None
    assert list(tmp_path.iterdir()) == []
