"""JSON responses and the one error type every endpoint raises for bad input."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response


class ApiError(Exception):
    """A request the service refuses: answered as ``{"error": message}`` with ``status`` (and
    ``headers``, such as a 401's challenge or a 409's Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_bytes(obj: Any) -> bytes:
    # orjson: ~1 µs for a one-image prediction against ~12 µs for the stdlib's C encoder and more
    # for Flask's jsonify; NumPy arrays are written directly (float32 in its shortest form).
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(obj), status=status, headers=headers, mimetype="application/json")


def error_body(message: str) -> dict[str, str]:
    return {"error": message}
