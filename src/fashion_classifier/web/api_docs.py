"""``/docs``: Swagger UI on ``/openapi.json``, with "try it out", served entirely from this origin.

Swagger UI's files come from the ``flask-swagger-ui`` package (its dist folder; the package's
version is Swagger UI's), so the page works offline and installs like every other dependency.
Only its blueprint's files are used, not its blueprint: that one renders an inline script. Here
the page loads ``static/api-docs.js`` to start Swagger UI, so its policy
(``security_headers.API_DOCS_POLICY``) allows scripts and styles from this origin only.

Asset URLs carry a fingerprint of the file (``?v=``): an asset asked for with the current one may
be cached for a year; without it, it is revalidated (ETag) on every use.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import NamedTuple

import flask_swagger_ui
from flask import Blueprint, Response, abort, render_template, request, send_file, url_for

from fashion_classifier.web.security_headers import API_DOCS_POLICY

bp = Blueprint("api_docs", __name__)

_SWAGGER_UI = Path(flask_swagger_ui.__file__).parent / "dist"
_OWN = Path(__file__).parent / "static"
_MIMETYPES = {".js": "text/javascript", ".css": "text/css"}
_YEAR = 365 * 24 * 3600


class Asset(NamedTuple):
    path: Path
    mimetype: str
    fingerprint: str  # the first 16 hex digits of the file's SHA-256


# Every file the page loads, by the name in its URL; nothing else is served.
_FILES = {
    "swagger-ui.css": _SWAGGER_UI / "swagger-ui.css",
    "swagger-ui-bundle.js": _SWAGGER_UI / "swagger-ui-bundle.js",
    "api-docs.css": _OWN / "api-docs.css",
    "api-docs.js": _OWN / "api-docs.js",
}
ASSET_NAMES = tuple(_FILES)


@cache
def assets() -> dict[str, Asset]:
    """The page's files with their fingerprints, read once per process (on the first use)."""
    return {
        name: Asset(path, _MIMETYPES[path.suffix], hashlib.sha256(path.read_bytes()).hexdigest()[:16])
        for name, path in _FILES.items()
    }


@bp.get("/docs")
def page() -> Response:
    urls = {name: url_for("api_docs.asset", name=name, v=a.fingerprint) for name, a in assets().items()}
    html = render_template("api_docs.html", assets=urls, openapi_url=url_for("openapi_document"))
    # A policy of its own: the other pages run no script at all (security_headers keeps this one).
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": API_DOCS_POLICY})


@bp.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    found = assets().get(name)
    if found is None:
        abort(404, description="no such asset")
    current = request.args.get("v") == found.fingerprint
    response = send_file(found.path, mimetype=found.mimetype, max_age=_YEAR if current else 0)
    if current:
        response.cache_control.immutable = True
    return response
