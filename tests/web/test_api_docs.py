"""/docs: Swagger UI from the package's files, same origin only, under a policy of its own.

The browser side (it loads, lists the operations, "try it out" classifies a PNG) is
tests/e2e/test_api_docs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import flask_swagger_ui

from fashion_classifier.web import api_docs
from fashion_classifier.web.security_headers import API_DOCS_POLICY, CONTENT_SECURITY_POLICY

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def referenced_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


def test_the_page_loads_only_same_origin_files(client):
    response = client.get("/docs", headers=HTML)
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    urls = referenced_urls(html)
    assert urls, html
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url  # no CDN, no other origin
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert {m.group(1) for m in (re.search(r'src="(/docs/assets/[^"?]+)', a) for a, _ in scripts)} == {
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/api-docs.js",
    }
    assert all(body.strip() == "" for _, body in scripts)  # no inline script
    assert "<style" not in html and "style=" not in html  # no inline style
    assert 'href="/docs/assets/swagger-ui.css?v=' in html
    assert 'data-openapi-url="/openapi.json"' in html


def test_the_page_has_its_own_strict_policy(client):
    response = client.get("/docs", headers=HTML)
    policy = response.headers["Content-Security-Policy"]
    assert policy == API_DOCS_POLICY
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy  # neither 'unsafe-inline' nor 'unsafe-eval'
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # The other pages keep theirs, error pages under /docs included.
    for path in ("/", "/model", "/docs/assets/nothing.js"):
        assert client.get(path, headers=HTML).headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path


def test_the_header_links_to_the_docs(client):
    for path in ("/", "/docs"):
        assert '<a href="/docs">API</a>' in client.get(path, headers=HTML).get_data(as_text=True), path


def test_assets_are_the_packages_files_with_their_types_and_long_caching(client):
    html = client.get("/docs", headers=HTML).get_data(as_text=True)
    linked = [url for url in referenced_urls(html) if url.startswith("/docs/assets/")]
    assert len(linked) == len(api_docs.ASSET_NAMES)
    swagger_dist = Path(flask_swagger_ui.__file__).parent / "dist"
    for url in linked:
        name = url.removeprefix("/docs/assets/").split("?")[0]
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.content_type == CONTENT_TYPES[Path(name).suffix], url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Security-Policy" not in response.headers  # a page's header, not a file's
        cache = response.cache_control
        assert cache.max_age == 365 * 24 * 3600 and cache.immutable, (url, response.headers["Cache-Control"])
        assert response.data == api_docs.assets()[name].path.read_bytes()
        if name.startswith("swagger-ui"):
            assert response.data == (swagger_dist / name).read_bytes()  # Swagger UI's own dist file
        # Without the current fingerprint the file is served too, but revalidated before reuse.
        stale = client.get(f"/docs/assets/{name}?v=0")
        assert stale.status_code == 200 and stale.cache_control.max_age == 0 and not stale.cache_control.immutable
        etag = stale.headers["ETag"]
        assert client.get(f"/docs/assets/{name}", headers={"If-None-Match": etag}).status_code == 304


def test_unknown_assets_are_404_as_json_or_html(client):
    for path in (
        "/docs/assets/swagger-ui-standalone-preset.js",
        "/docs/assets/..%2f__init__.py",
        "/docs/assets/",
        "/docs/assets/api-docs.js/x",
    ):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["error"], path
        page = client.get(path, headers=HTML)
        assert page.status_code == 404 and page.mimetype == "text/html" and 'id="error"' in page.get_data(as_text=True)


def test_the_docs_routes_are_flasks_not_the_fast_paths(client):
    # The fast path answers POSTs to the prediction routes only; anything else on /docs is Flask's.
    response = client.post("/docs", data=b"x", headers={"Content-Type": "image/png"})
    assert response.status_code == 405 and response.get_json()["error"]
    assert "GET" in response.headers["Allow"]


def test_the_document_lists_the_asset_names(client):
    doc = client.get("/openapi.json").get_json()
    (name,) = [p for p in doc["paths"]["/docs/assets/{name}"]["get"]["parameters"] if p["name"] == "name"]
    assert tuple(name["schema"]["enum"]) == api_docs.ASSET_NAMES
