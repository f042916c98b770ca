"""Process setup for serving, done before NumPy or prometheus_client are imported.

Used by ``fashion-classifier serve`` (before it execs gunicorn) and by the gunicorn config
(when gunicorn is started directly). Deliberately imports nothing heavy.
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

from fashion_classifier.config import MULTIPROC_ENV

# Each worker owns one core: BLAS/OpenMP pools would oversubscribe the other worker's.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
# Set when this code created the metrics directory, so the gunicorn master removes it on exit.
OWNED_ENV = "FC_METRICS_DIR_OWNED"


def pin_threads(env: dict[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    for name in THREAD_VARS:
        env.setdefault(name, "1")


def prepare_metrics_dir(env: dict[str, str] | None = None) -> Path:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` name an empty directory and export it.

    Unset: a fresh temporary directory (marked as owned, removed when gunicorn exits). Set: it
    is created if missing and emptied of a previous run's ``*.db`` files, whose values would
    otherwise be added to this run's.
    """
    env = os.environ if env is None else env
    raw = env.get(MULTIPROC_ENV)
    if not raw:
        path = Path(tempfile.mkdtemp(prefix="fc-prometheus-"))
        env[MULTIPROC_ENV] = str(path)
        env[OWNED_ENV] = "1"
        return path
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def cpu_count() -> int:
    """CPUs this process may run on (respects affinity masks, e.g. taskset and cgroups cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def freeze_heap() -> int:
    """Collect once, then leave everything allocated so far out of every later collection.

    For a serving worker once its app is loaded (gunicorn's ``post_worker_init``): modules, the
    app, the model and the metrics live as long as the process, yet each full collection walked
    them all (~95,000 objects: pauses of 15-50 ms of a worker under load, a good part of its p99).
    Frozen objects are still freed by reference counting when they are dropped; only a cycle
    among them would stay, which is why the collection comes first. Returns how many are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
