"""``FC_LOG_FORMAT=json``: every line the server logs is one JSON object (for Loki, ELK, ...).

``JsonLogger``, gunicorn's logger class then, keeps gunicorn's handlers (``errorlog`` on stderr, the
access log where ``FC_ACCESS_LOG`` says) and gives them ``JsonFormatter``. The app's own ``logging``
records reach stderr through a root handler at WARNING: the records Python's last-resort handler
prints in text mode, now as JSON; Python warnings and uncaught exceptions are logged there too,
and what native code writes to stderr is wrapped in JSON by the master (``stderr_relay``). The
master sets this up before it forks, so every worker inherits it.

A logger class rather than gunicorn's ``logconfig_dict``: with any logconfig gunicorn builds every
request's access-log fields even when no access log is written (``Logger.access_log_enabled``),
the per-request cost that leaving FC_ACCESS_LOG unset avoids.

The JSON itself is python-json-logger's; this module names the fields and adds an access line's.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from fashion_classifier.server import stderr_relay

ACCESS_LOGGER = "gunicorn.access"
# gunicorn's access-log atoms -> field names (request headers are "{name}i", lower case).
_ACCESS_FIELDS = {
    "m": "method",
    "U": "path",
    "q": "query",
    "H": "protocol",
    "h": "remote_addr",
    "a": "user_agent",
    "{x-request-id}i": "request_id",
}
_MARK = "_fc_json"  # on the root handler this module adds, so a second setup replaces it


class JsonFormatter(_LibraryJsonFormatter):
    """time (ISO 8601, UTC), level, logger, pid, message; ``exception`` (a string) with a traceback;
    an access line adds method, path, query, protocol, status, duration_seconds, bytes,
    remote_addr, user_agent and request_id (from ``X-Request-Id``) where the request has them."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(process)d %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid", "exc_info": "exception"},
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)
        if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
            log_data.update(access_fields(record.args))


def access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of one access line from gunicorn's atoms; absent or empty values are left out."""
    fields = {name: atoms[key] for key, name in _ACCESS_FIELDS.items() if atoms.get(key) not in (None, "", "-")}
    status = str(atoms.get("s", ""))
    fields["status"] = int(status) if status.isdigit() else status
    if isinstance(atoms.get("D"), int):  # microseconds
        fields["duration_seconds"] = atoms["D"] / 1e6
    if isinstance(atoms.get("B"), int):
        fields["bytes"] = atoms["B"]
    return fields


def json_line(level: int, message: str, logger: str = "fashion_classifier") -> str:
    """One JSON log line for a message printed outside ``logging`` (``serve``'s own, before gunicorn)."""
    return JsonFormatter().format(logging.LogRecord(logger, level, __file__, 0, message, None, None))


class _Atoms(glogging.SafeAtoms):
    """gunicorn's access atoms (headers looked up case-insensitively) without the quote escaping
    its text lines need: the JSON encoder escapes the values itself."""

    def __init__(self, atoms: Mapping[str, Any]) -> None:
        dict.__init__(self, atoms)


class JsonLogger(glogging.Logger):
    """gunicorn's logger with JSON lines (``logger_class`` when FC_LOG_FORMAT=json)."""

    atoms_wrapper_class = _Atoms

    def setup(self, cfg: Any) -> None:  # gunicorn's Config
        super().setup(cfg)  # also run again on a reload (SIGHUP): nothing here stacks up
        formatter = JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
        install_root_handler(formatter)
        stderr_relay.start(formatter.format)  # before any worker is forked, which inherits it


def install_root_handler(formatter: logging.Formatter) -> None:
    """Send the app's records (WARNING and up), Python warnings and uncaught exceptions to stderr as JSON."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)  # as Python's last-resort handler, which prints them in text mode
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # what threading's own hook ignores too
        return
    thread = args.thread.name if args.thread is not None else "?"
    logging.getLogger("uncaught").critical(
        "uncaught exception in thread %s", thread, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )
