"""The prediction routes, answered below Flask.

Most of a one-image prediction's time in the app went to Flask and Werkzeug around the view:
request and app contexts, URL matching, the response object. This WSGI layer sits between the
metrics middleware and Flask. It answers a prediction request itself when it is a POST to a route
whose view ``answers.view`` made, with a Content-Length within the upload limit, by calling the
function that view calls (``api.run_predict``, ``tfserving.run_predict``, ``oip.run_inference``)
with a plain Werkzeug request. Everything else goes on to Flask. Its table is read from the rules
the blueprints registered (:func:`routes`), so each rule is written once.

Errors are still answered in one place: an exception raised here is handed to Flask's own error
handling (``errors``) inside a request context, made only then. Requests answered here skip
Flask's request hooks: the one there is (``observability``'s ``after_request``, the route label)
is done here, and a test fails if another hook is added (it would not run for these routes).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import NamedTuple

from flask import Flask
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request

from fashion_classifier.inference.serving_state import ServingState
from fashion_classifier.web.answers import Run, answered
from fashion_classifier.web.observability import ENDPOINT, T0

# A rule's variable with Werkzeug's default converter, which matches one path segment.
_VARIABLE = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


class Route(NamedTuple):
    pattern: re.Pattern[str]  # the Flask rule as a regex
    rule: str  # the Flask rule, the metrics label
    run: Run  # (state, request, started, **path parameters)


def routes(app: Flask) -> tuple[Route, ...]:
    """The POST rules whose view ``answers.view`` made, each with the function it runs."""
    table = []
    for rule in app.url_map.iter_rules():
        run = getattr(app.view_functions[rule.endpoint], "run", None)
        if run is not None and "POST" in (rule.methods or ()):
            table.append(Route(pattern(rule.rule), rule.rule, run))
    return tuple(table)


def pattern(rule: str) -> re.Pattern[str]:
    """A Flask rule as a regex; only the default converter is known here ([^/]+, as Werkzeug's)."""
    parts = _VARIABLE.split(rule)  # static text at even indices, variable names at odd ones
    if any("<" in part or ">" in part for part in parts[::2]):
        raise ValueError(f"{rule}: the fast path knows only variables without a converter")
    return re.compile("".join(f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)))


class FastPath:
    """Built once the blueprints are registered: its table is read from the app's rules."""

    def __init__(self, app: Flask, state: ServingState, max_body: int) -> None:
        self._flask = app
        self._next = app.wsgi_app
        self._state = state
        self._max_body = max_body
        self.routes = routes(app)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        found = self._route(environ)
        if found is None:
            return self._next(environ, start_response)
        route, params, length = found
        environ[ENDPOINT] = route.rule
        try:
            try:
                body = environ["wsgi.input"].read(length)
            except (OSError, ValueError):  # the worker's read timeout, or the client went away
                body = b""
            if len(body) < length:
                raise ClientDisconnected()  # as Werkzeug's stream raises it in the view: a 408
            environ["wsgi.input"] = io.BytesIO(body)
            # populate_request=False: no environ -> request -> environ cycle, which would leave
            # every request's objects to the cyclic GC (and its full collections' pauses).
            request = Request(environ, populate_request=False)
            answer = answered(route.run, self._state, request, environ.get(T0) or perf_counter(), **params)
        except Exception as exc:
            return self._flask_error(exc, environ, start_response)
        start_response("200 OK", answer.headers)
        return [answer.payload]

    def _route(self, environ: dict) -> tuple[Route, dict[str, str], int] | None:
        """The route, its path parameters and the body's length, for a request answered here."""
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        length = environ.get("CONTENT_LENGTH", "")
        # No Content-Length (a chunked body) or one over the limit: Flask reads or refuses it.
        if not (length.isascii() and length.isdigit()) or int(length) > self._max_body:
            return None
        path = environ.get("PATH_INFO", "")
        if not path.isascii():  # Werkzeug decodes it as UTF-8 before matching: leave it to Flask
            return None
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is not None:
                return route, match.groupdict(), int(length)
        return None

    def _flask_error(self, exc: Exception, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """The error response Flask's handlers (``errors``) give for ``exc``."""
        with self._flask.request_context(environ):
            response = self._flask.make_response(self._flask.handle_user_exception(exc))
        return response(environ, start_response)
