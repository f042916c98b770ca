"""JSON responses and the one error type every endpoint raises for bad input."""

from __future__ import annotations

import json
from typing import Any

from flask import Response


class ApiError(Exception):
    """A request the service refuses: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Flask's jsonify sorts keys and pretty-prints in debug; the C encoder with compact
    # separators is ~3× cheaper, and this is on every request's path.
    body = json.dumps(obj, separators=(",", ":"))
    return Response(body, status=status, headers=headers, mimetype="application/json")


def error_body(message: str) -> dict[str, str]:
    return {"error": message}
