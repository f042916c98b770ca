"""How many gRPC server processes serve: written by the master's supervisor, read by the workers'
readiness check, through one small file in the serving run's shared directory (the metrics one).

A pod whose gRPC servers are all down or hung must leave its Service's endpoints: its readiness
(``/v2/health/ready``, HTTP) then answers 400 (not ready) although the HTTP workers are fine.
"""

from __future__ import annotations

import os
from pathlib import Path

from fashion_classifier.config import MULTIPROC_ENV

FILE_NAME = "grpc-serving"


def write(directory: str | Path, serving: int) -> None:
    """Record ``serving`` atomically (a reader sees the old or the new count, never a part)."""
    path = Path(directory) / FILE_NAME
    partial = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    partial.write_text(str(serving))
    partial.replace(path)


def clear(directory: str | Path) -> None:
    """Forget a previous run's count (a directory kept between runs)."""
    (Path(directory) / FILE_NAME).unlink(missing_ok=True)


def serving(directory: str | Path | None = None) -> int | None:
    """The recorded count; None when nothing records it (no gRPC server, or an app run without
    ``fashion-classifier serve``'s master)."""
    directory = directory if directory is not None else os.environ.get(MULTIPROC_ENV)
    if not directory:
        return None
    try:
        return int((Path(directory) / FILE_NAME).read_text())
    except FileNotFoundError:
        return None
