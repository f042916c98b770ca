"""The gunicorn config's hooks, called as gunicorn calls them (in a subprocess: importing the
config prepares the process's metrics directory and environment)."""

from __future__ import annotations

import os
import subprocess
import sys

from fashion_classifier.server import runtime

WORKER_EXIT = """
import types
import fashion_classifier.server.gunicorn_conf as conf
from fashion_classifier.web.state import EXTENSION

closed = []

class State:
    def close(self):
        closed.append("app")

class App:  # what create_app returns, as far as worker_exit looks
    extensions = {EXTENSION: State()}

conf.worker_exit(None, types.SimpleNamespace(wsgi=App()))
conf.worker_exit(None, types.SimpleNamespace(wsgi=lambda environ, start_response: []))  # a test's app
conf.worker_exit(None, types.SimpleNamespace())  # the app never loaded
print(closed)
"""


def test_worker_exit_closes_the_serving_state_of_the_app_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FC_")}
    env[runtime.MULTIPROC_ENV] = str(tmp_path / "prom")
    done = subprocess.run([sys.executable, "-c", WORKER_EXIT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "['app']"
