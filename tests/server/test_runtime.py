"""Process setup for serving workers (``runtime``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

from fashion_classifier.server import runtime


class _Node:
    pass


def test_freeze_heap_collects_first_then_freezes():
    node = _Node()
    node.me = node  # a cycle: only the cyclic GC frees it
    dead = weakref.ref(node)
    del node
    try:
        frozen = runtime.freeze_heap()
        assert dead() is None  # collected, not frozen for the life of the process
        assert frozen == gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_gunicorn_freezes_each_worker_once_the_app_is_loaded(tmp_path):
    # The config module prepares the metrics directory and patches gunicorn as it is imported:
    # a process of its own keeps that away from the other tests.
    # (Python 3.12 starts with a few hundred objects frozen: the count before is not 0.)
    code = (
        "import gc, fashion_classifier.server.gunicorn_conf as conf; "
        "before = gc.get_freeze_count(); conf.post_worker_init(None); print(before, gc.get_freeze_count())"
    )
    env = {**os.environ, runtime.MULTIPROC_ENV: str(tmp_path / "prom")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert before < 1000 and after > before + 1000  # the imported modules at least


def _tree(root, files):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_cpu_quota_of_cgroup_v2_is_the_smallest_on_the_way_up(tmp_path):
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/kubepods/pod1/c1\n")
    cgroups = tmp_path / "cgroup"
    _tree(
        cgroups,
        {
            "kubepods/cpu.max": "max 100000\n",
            "kubepods/pod1/cpu.max": "150000 100000\n",
            "kubepods/pod1/c1/cpu.max": "max 100000\n",
        },
    )
    assert runtime.cpu_quota(cgroups, proc) == 1.5
    assert runtime.cpu_count(cgroups, proc) == min(2, len(os.sched_getaffinity(0)))  # rounded up
    (cgroups / "kubepods/pod1/cpu.max").write_text("max 100000\n")
    assert runtime.cpu_quota(cgroups, proc) is None
    assert runtime.cpu_count(cgroups, proc) == len(os.sched_getaffinity(0))


def test_the_cpu_quota_of_cgroup_v1_and_what_is_not_one(tmp_path):
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    cgroups = tmp_path / "cgroup"
    # A container's own cgroup at the mount's root: the path named in /proc/self/cgroup is not there.
    _tree(cgroups, {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert runtime.cpu_quota(cgroups, proc) == 0.5
    assert runtime.cpu_count(cgroups, proc) == 1
    (cgroups / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    assert runtime.cpu_quota(cgroups, proc) is None
    proc.write_text("garbage\n3:cpu:/x\n")
    _tree(cgroups, {"cpu/cpu.cfs_quota_us": "not a number\n"})
    assert runtime.cpu_quota(cgroups, proc) is None
    assert runtime.cpu_quota(cgroups, tmp_path / "missing") is None


def _limit(group: Path, cpus: float) -> None:
    """Give a new cgroup a CPU quota (the v1 cpu controller's files, else v2's cpu.max)."""
    if (group / "cpu.cfs_quota_us").exists():
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(int(cpus * 100000)))
    else:
        (group / "cpu.max").write_text(f"{int(cpus * 100000)} 100000")


def test_serving_starts_one_worker_per_cpu_its_cgroup_quota_allows(tmp_path):
    # A real cgroup, as `docker run --cpus=1` makes: needs root and a writable cgroupfs (as CI has).
    assert runtime.cpu_count() >= 2, "this check needs a process allowed 2 CPUs or more"
    v1 = Path("/sys/fs/cgroup/cpu")
    group = (v1 if v1.is_dir() else Path("/sys/fs/cgroup")) / f"fc-test-{os.getpid()}"
    group.mkdir()
    try:
        _limit(group, 1.0)
        code = "import fashion_classifier.server.gunicorn_conf as conf; print(conf.workers)"
        env = {**os.environ, runtime.MULTIPROC_ENV: str(tmp_path / "prom")}
        env.pop("FC_WORKERS", None)
        inside = subprocess.run(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1"', sys.executable, code],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert inside.returncode == 0, inside.stderr
        assert inside.stdout.split()[-1] == "1"
        outside = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert outside.stdout.split()[-1] == str(runtime.cpu_count())
    finally:
        group.rmdir()
