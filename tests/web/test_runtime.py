"""Process setup for serving workers (``runtime``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref

from fashion_classifier.web import runtime


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
    code = (
        "import gc, fashion_classifier.web.gunicorn_conf as conf; "
        "assert gc.get_freeze_count() == 0; conf.post_worker_init(None); print(gc.get_freeze_count())"
    )
    env = {**os.environ, runtime.MULTIPROC_ENV: str(tmp_path / "prom")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 1000  # the imported modules at least
