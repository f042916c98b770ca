"""Process setup for serving, done before NumPy or prometheus_client are imported.

Used by ``fashion-classifier serve`` (before it execs gunicorn) and by the gunicorn config
(when gunicorn is started directly). Deliberately imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import tempfile
from pathlib import Path

from fashion_classifier.config import MULTIPROC_ENV
from fashion_classifier.server import grpc_status

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
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def pin_threads(env: dict[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    for name in THREAD_VARS:
        env.setdefault(name, "1")


def prepare_metrics_dir(env: dict[str, str] | None = None) -> Path:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` name an empty directory and export it.

    Unset: a fresh temporary directory (marked as owned, removed when gunicorn exits). Set: it
    is created if missing and emptied of a previous run's ``*.db`` files, whose values would
    otherwise be added to this run's, and of its gRPC status (``grpc_status``), which would
    otherwise decide this run's readiness.
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
    grpc_status.clear(path)
    return path


def cpu_count(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs this process may use: its affinity mask (taskset, cpusets), and no more than its
    cgroup's CPU quota allows, rounded up (``docker run --cpus=1.5``, a pod's CPU limit: 2)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    quota = cpu_quota(cgroup_root, proc_cgroup)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs the CFS quota of this process's cgroup and its ancestors allows (the smallest), or
    None without one: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.

    Hand-written: loky's ``cpu_count`` does this, at the cost of a dependency in the serving image
    and an import of multiprocessing machinery in every ``serve``.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: one hierarchy
            limits += _quotas(cgroup_root, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own mount
            for mount in dict.fromkeys((controllers, "cpu,cpuacct", "cpu")):
                limits += _quotas(cgroup_root / mount, path, _v1_quota)
    return min(limits, default=None)


def _quotas(mount: Path, path: str, read) -> list[float]:
    """The quotas found in the cgroup at ``path`` under ``mount`` and in each of its parents; in a
    container's cgroup namespace the mount's root is the container's own cgroup."""
    found = []
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
            quota = read(mount.joinpath(*parts[:depth]))
            if quota is not None:
                found.append(quota)
    return found


def _v2_quota(directory: Path) -> float | None:
    quota, period = (directory / "cpu.max").read_text().split()
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    quota = int((directory / "cpu.cfs_quota_us").read_text())
    return None if quota < 0 else quota / int((directory / "cpu.cfs_period_us").read_text())


def freeze_heap() -> int:
    """Collect once, then leave everything allocated so far out of every later collection.

    For a serving worker once its app is loaded (gunicorn's ``post_worker_init``): modules, the
    app, the model and the metrics live as long as the process, yet each full collection walked
    them all (pauses long enough to be a good part of a loaded worker's p99).
    Frozen objects are still freed by reference counting when they are dropped; only a cycle
    among them would stay, which is why the collection comes first. Returns how many are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
