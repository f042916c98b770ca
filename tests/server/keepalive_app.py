"""A tiny WSGI app for tests/server/test_keepalive_worker.py, served by the real gunicorn config.

``/v2/health/ready`` answers 200 (the test harness waits on it). Every other path answers
``{"path", "port", "pid", "read"}``: the client's port tells which TCP connection carried the
request, and ``read`` how many body bytes the app read. ``/ignore-body`` reads none.
"""

from __future__ import annotations

import json
import os


def app(environ, start_response):  # noqa: ANN001, ANN201 - WSGI signature
    path = environ["PATH_INFO"]
    read = 0 if path == "/ignore-body" else len(environ["wsgi.input"].read())
    body = json.dumps({"path": path, "port": int(environ["REMOTE_PORT"]), "pid": os.getpid(), "read": read}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
