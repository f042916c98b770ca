"""``FC_LOG_FORMAT=json``: what reaches stderr outside ``logging`` becomes JSON lines too.

Native code writes to file descriptor 2 directly (LiteRT's "INFO: Created TensorFlow Lite XNNPACK
delegate" at every model load), and so does Python for an exception it can only ignore. The
gunicorn master points its descriptor 2 at a pipe before it forks any worker, so every process
of the server writes there, and one thread of the master copies each line to the real stderr:
JSON lines as they are, any other line wrapped in one (logger ``stderr``; level from an
``INFO:``/``WARNING:``/``ERROR:`` prefix, else WARNING). At exit it drains what is left.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable

JSON_START = b'{"time"'  # how every line of json_logging.JsonFormatter starts
MAX_LINE = 1 << 20  # a longer run without a newline is passed on in pieces
_LEVELS = {b"INFO": logging.INFO, b"WARNING": logging.WARNING, b"ERROR": logging.ERROR}
_started_in: int | None = None  # pid of the process whose stderr is relayed


def start(format_line: Callable[[logging.LogRecord], str]) -> None:
    """Relay this process's (and its future children's) stderr, once per process."""
    global _started_in
    if _started_in == os.getpid():
        return
    _started_in = os.getpid()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    # A forked worker keeps only fd 2: without the master's read end and its copy of the real
    # stderr, a worker whose master died gets EPIPE instead of filling a pipe nobody reads.
    os.register_at_fork(after_in_child=lambda: _close(read, real))
    thread = threading.Thread(target=_copy, args=(read, real, format_line), name="stderr-relay", daemon=True)
    thread.start()
    atexit.register(_drain, real, thread)


def _copy(read: int, real: int, format_line: Callable[[logging.LogRecord], str]) -> None:
    pending = b""
    while chunk := os.read(read, 65536):  # b"" once every process has closed its end
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_LINE:
            lines.append(pending)
            pending = b""
        _write(real, b"".join(_relayed(line, format_line) for line in lines if line.strip()))
    if pending.strip():
        _write(real, _relayed(pending, format_line))
    os.close(read)


def _relayed(line: bytes, format_line: Callable[[logging.LogRecord], str]) -> bytes:
    """as_json_line, or the line as it came if that fails: this thread must never die, or every
    process of the server would block once the pipe is full."""
    try:
        return as_json_line(line, format_line)
    except Exception:  # noqa: BLE001 - any failure: pass the line on unchanged
        return line + b"\n"


def as_json_line(line: bytes, format_line: Callable[[logging.LogRecord], str]) -> bytes:
    """``line`` (without its newline) as one JSON line: itself if it is one already, else wrapped."""
    if line.startswith(JSON_START):
        return line + b"\n"
    text = line.decode(errors="replace").rstrip("\r")
    prefix = text.split(":", 1)[0].encode()
    record = logging.LogRecord("stderr", _LEVELS.get(prefix, logging.WARNING), "", 0, text, None, None)
    record.process = None  # some process of the server: which one, the pipe does not say
    return format_line(record).encode() + b"\n"


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _write(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue
        except OSError:  # the real stderr is gone: nothing left to tell
            return


def _drain(real: int, thread: threading.Thread) -> None:
    """At the master's exit: close its end of the pipe and let the thread pass on the rest."""
    if _started_in != os.getpid():  # a forked worker exiting: the relay is the master's
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os.dup2(real, 2)  # closes this process's write end; the workers have exited by now
    thread.join(timeout=2.0)
