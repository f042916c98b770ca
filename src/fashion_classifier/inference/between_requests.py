"""Whether this process is between requests: background work (a shadow candidate) waits for that.

gunicorn's ``pre_request`` and ``post_request`` hooks (``web.gunicorn_conf``) mark each request's
start and the moment its response was written; a process without them is always between
requests. Imports nothing heavy: the gunicorn config module loads it in the master.
"""

from __future__ import annotations

import threading

_between = threading.Event()
_between.set()


def started() -> None:
    _between.clear()


def finished() -> None:
    _between.set()


def wait() -> None:
    """Return once no request is being served (at once in a process without the hooks)."""
    _between.wait()
