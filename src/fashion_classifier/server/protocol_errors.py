"""JSON bodies for the errors gunicorn answers by itself.

gunicorn's HTTP parser refuses some requests before the app runs (a request line or header too
long, too many headers, a malformed request line) and answers them with an HTML page written by
``gunicorn.util.write_error``. Every other error of this service is JSON ``{"error": ...}`` and
API clients parse it, so the serving processes replace that one function (``install``, called
from the gunicorn config in the master; workers inherit it through the fork).
"""

from __future__ import annotations

import json
import socket

from gunicorn import util


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


def install() -> None:
    util.write_error = write_json_error
