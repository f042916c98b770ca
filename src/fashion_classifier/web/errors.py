"""Every error is an answer: JSON ``{"error": ...}`` with a 4xx, or an HTML page for browsers.

Handlers cover the service's named errors (``fashion_classifier.errors`` and the web layer's own),
each mapped to its HTTP status once in :data:`STATUSES`, every Werkzeug ``HTTPException`` (404,
405, 413 from ``MAX_CONTENT_LENGTH``, malformed multipart, ...) and, as a last resort, any
other exception: that one is logged with its traceback and answered with a JSON 500, so a bug
never kills the worker or leaves a client without a body.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from fashion_classifier import errors
from fashion_classifier.predlog.base import PredictionLogUnavailable
from fashion_classifier.web import auth, feedback
from fashion_classifier.web.responses import json_response

log = logging.getLogger(__name__)

# Each named error's HTTP status and the headers that go with it: the one place they are written.
STATUSES: dict[type[errors.ServiceError], tuple[int, dict[str, str] | None]] = {
    errors.InvalidInput: (400, None),
    auth.Unauthorized: (401, {"WWW-Authenticate": auth.REALM}),
    auth.InvalidFeedbackToken: (403, None),
    errors.ModelNotFound: (404, None),
    feedback.PredictionNotFound: (404, None),
    feedback.NotWrittenYet: (409, {"Retry-After": "1"}),
    errors.TooLarge: (413, None),
    errors.UnsupportedMediaType: (415, None),
    errors.UndecodableImage: (422, None),
    errors.ModelNotReady: (503, None),
}


def http_status(exc: errors.ServiceError) -> tuple[int, dict[str, str] | None]:
    """The status (and headers) of a named error: its own class's, or its nearest base's (500 if none: a bug)."""
    for kind in type(exc).__mro__:
        found = STATUSES.get(kind)
        if found is not None:
            return found
    log.error("%s has no HTTP status; answered 500", type(exc).__name__)
    return 500, None


def wants_html() -> bool:
    """Browsers (Accept prefers text/html) get pages; API clients and ``*/*`` get JSON."""
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if wants_html():
        page = render_template("error.html", status=status, message=message)
        return Response(page, status=status, headers=headers, mimetype="text/html")
    return json_response({"error": message}, status, headers)


def install(app: Flask) -> None:
    limit = app.config.get("MAX_CONTENT_LENGTH")

    @app.errorhandler(errors.ServiceError)
    def _refused(exc: errors.ServiceError) -> Response:
        status, headers = http_status(exc)
        return error_response(status, str(exc), headers)

    @app.errorhandler(PredictionLogUnavailable)
    def _predlog_down(exc: PredictionLogUnavailable) -> Response:
        # The message is written for clients; the driver's error (hosts, internals) only goes
        # to the log.
        log.warning("prediction log unavailable: %s (%r)", exc, exc.__cause__)
        return error_response(503, f"prediction log unavailable: {exc}", {"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if isinstance(exc, RequestEntityTooLarge) and limit:
            message = f"request body too large: the limit is {limit:,} bytes"
        elif isinstance(exc, ClientDisconnected):
            # Werkzeug's text blames "the browser (or proxy)"; what happened is that the body
            # stopped before its Content-Length (the worker waits 5 s for each read).
            status = 408
            message = "the request body stopped arriving before its Content-Length; send it again"
        else:
            message = exc.description or exc.name
        headers = {}
        if status == 405:
            allow = exc.get_response().headers.get("Allow")
            if allow:
                headers["Allow"] = allow
        return error_response(status, message, headers or None)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the request was logged")
