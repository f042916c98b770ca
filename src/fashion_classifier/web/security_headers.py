"""Browser-facing security headers on every HTML page.

The pages run no script at all, so the policy forbids script outright; styles are inline (one
``<style>`` block and the probability bars' widths), images are the page's own or ``data:`` URIs
(the uploaded image and the model's input), and forms post only to this origin. Pages may not be
framed (clickjacking of the feedback form). JSON answers carry ``nosniff`` too.

One page runs script: ``/docs`` (Swagger UI, ``api_docs``) sets ``API_DOCS_POLICY`` itself, and a
policy a view set is kept. It allows scripts and styles from this origin's files only (no inline
code, no ``eval``), fetches to this origin only (the document and "try it out" requests), and
``data:`` images (Swagger UI's icons are in its CSS).
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src 'self' data:",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
API_DOCS_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
NOSNIFF = ("X-Content-Type-Options", "nosniff")  # on every answer (the fast path adds its own)
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "same-origin",
}


def install(app: Flask) -> None:
    @app.after_request
    def _secure(response: Response) -> Response:
        response.headers[NOSNIFF[0]] = NOSNIFF[1]
        if response.mimetype == "text/html":
            for name, value in HTML_HEADERS.items():
                response.headers.setdefault(name, value)  # keeps a page's own policy (/docs)
        return response
