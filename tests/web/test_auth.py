"""The API token (issue 21 item 4) against a real gunicorn: who may read the log and send feedback.

With a token file configured, the prediction history, ``/api/v1/feedback`` and ``/predictions``
answer 401 with ``WWW-Authenticate`` and a JSON body without the token or with a wrong one; the
upload page, the prediction endpoints, health and the model stay open; the result page's signed
feedback token lets a browser user correct that one prediction, and nothing else. Without a
token everything is open, as ``make run`` is.
"""

from __future__ import annotations

import re
import time
import uuid
from unittest import mock

import pytest
import requests
from harness.server import start_serve

from fashion_classifier.config import DEFAULT_MODEL_DIR, ConfigError, Settings
from fashion_classifier.web.auth import FEEDBACK_TOKEN_TTL, REALM, ApiToken

TOKEN = "test-api-token-" + "x" * 24
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secret") / "token"
    path.write_text(TOKEN + "\n")  # a trailing newline, as `echo > file` leaves it
    return path


@pytest.fixture(scope="module")
def secured(shipped_store, token_file, tmp_path_factory):
    server = start_serve(
        tmp_path_factory.mktemp("secured"), shipped_store, workers=2, extra_env={"FC_API_TOKEN_FILE": str(token_file)}
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_server(shipped_store, tmp_path_factory):
    server = start_serve(tmp_path_factory.mktemp("open"), shipped_store, workers=2)
    yield server
    server.stop()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def protected(base: str) -> list[tuple[str, str, dict]]:
    """(method, url, requests kwargs) of every route that needs the token."""
    return [
        ("GET", f"{base}/api/v1/predictions", {}),
        ("GET", f"{base}/api/v1/predictions/counts", {}),
        ("GET", f"{base}/api/v1/predictions/{uuid.uuid4()}", {}),
        ("POST", f"{base}/api/v1/feedback", {"json": {"prediction_id": str(uuid.uuid4()), "true_label": 1}}),
        ("GET", f"{base}/predictions", {}),
    ]


def upload(base: str, png: bytes) -> tuple[str, str | None, str]:
    """Classify through the page: (prediction id, feedback token or None, result HTML)."""
    response = requests.post(f"{base}/", files={"file": ("shirt.png", png, "image/png")}, headers=HTML, timeout=10)
    assert response.status_code == 200, response.text
    html = response.text
    pid = re.search(r'id="prediction-id">([^<]+)<', html).group(1)
    signed = re.search(r'name="feedback_token" value="([^"]+)"', html)
    return pid, signed.group(1) if signed else None, html


def send_feedback(base: str, pid: str, signed: str | None, label: int = 3, **headers: str) -> requests.Response:
    form = {"prediction_id": pid, "true_label": str(label)}
    if signed is not None:
        form["feedback_token"] = signed
    return requests.post(f"{base}/feedback", data=form, headers=headers, timeout=10)


def test_protected_routes_answer_401_without_the_token(secured):
    for method, url, kwargs in protected(secured.base_url):
        for headers in ({}, bearer("wrong"), bearer(TOKEN + "x"), {"Authorization": f"Basic {TOKEN}"}, bearer("")):
            response = requests.request(method, url, headers=headers, timeout=10, **kwargs)
            assert response.status_code == 401, (method, url, headers, response.text)
            assert response.headers["WWW-Authenticate"] == REALM
            assert response.headers["Content-Type"] == "application/json"
            assert "token" in response.json()["error"]
    # A browser asking for the history page gets a 401 page, with the challenge too.
    response = requests.get(f"{secured.base_url}/predictions", headers=HTML, timeout=10)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == REALM
    assert response.headers["Content-Type"].startswith("text/html")
    assert 'id="predictions"' not in response.text


def test_protected_routes_answer_with_the_token(secured):
    expected = {"/api/v1/predictions": 200, "/api/v1/predictions/counts": 200, "/predictions": 200}
    for method, url, kwargs in protected(secured.base_url):
        response = requests.request(method, url, headers=bearer(), timeout=10, **kwargs)
        path = url.removeprefix(secured.base_url)
        # Made-up ids are unknown: 404, answered by the handler the token let through.
        assert response.status_code == expected.get(path, 404), (url, response.text)


def test_the_product_stays_open(secured, png):
    base = secured.base_url
    for path in ("/", "/v2/health/live", "/v2/health/ready", "/api/v1/model", "/model", "/openapi.json"):
        assert requests.get(base + path, timeout=10).status_code == 200, path
    response = requests.post(f"{base}/api/v1/predict", files={"file": ("a.png", png(0), "image/png")}, timeout=10)
    assert response.status_code == 200, response.text
    response = requests.post(f"{base}/v2/models/fashion/infer", data=png(0), headers={"Content-Type": "image/png"})
    assert response.status_code != 401
    pid, signed, html = upload(base, png(1))
    assert signed and 'href="/predictions"' not in html  # no link to a page the browser may not open


def test_page_feedback_with_its_signed_token_needs_no_api_token(secured, png):
    base = secured.base_url
    pid, signed, _ = upload(base, png(2))
    response = send_feedback(base, pid, signed, label=3, **HTML)
    assert response.status_code == 200, response.text
    assert 'id="feedback-result"' in response.text and pid in response.text and "Dress" in response.text
    # The label is stored: read it back with the API token (the row may still be queued).
    deadline = time.monotonic() + 10
    while True:
        stored = requests.get(f"{base}/api/v1/predictions/{pid}", headers=bearer(), timeout=10)
        if stored.status_code == 200 and stored.json()["true_label"] == 3:
            break
        assert time.monotonic() < deadline, stored.text
        time.sleep(0.05)


def test_forged_expired_or_borrowed_feedback_tokens_are_refused(secured, png):
    base = secured.base_url
    pid, signed, _ = upload(base, png(3))
    other_pid, other_signed, _ = upload(base, png(4))
    payload, stamp, signature = signed.split(".")
    other_payload = other_signed.split(".")[0]
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    real_version = ApiToken(TOKEN).verify_feedback(signed, uuid.UUID(pid))[0]
    with mock.patch("time.time", return_value=time.time() - FEEDBACK_TOKEN_TTL - 5):
        stale = ApiToken(TOKEN).sign_feedback(uuid.UUID(pid), real_version, 3)  # the server's key, an hour ago
    bad = {
        "another prediction's token": (pid, other_signed),
        "this token on another id": (other_pid, signed),
        "a forged signature": (pid, f"{payload}.{stamp}.{flipped}"),
        "another prediction's payload under this signature": (pid, f"{other_payload}.{stamp}.{signature}"),
        "a token signed with another key": (pid, ApiToken("not-the-token").sign_feedback(uuid.UUID(pid), "v", 1)),
        "garbage": (pid, "x" * 100),
        "an overlong token": (pid, "1." * 2000),
    }
    for what, (prediction_id, token) in bad.items():
        response = send_feedback(base, prediction_id, token)
        assert response.status_code == 403, (what, response.text)
        assert response.json()["error"], what
    response = send_feedback(base, pid, stale, **HTML)
    assert response.status_code == 403 and "expired" in response.text
    # Without any token the form is the API: 401, or 200 with the API token.
    response = send_feedback(base, pid, None)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == REALM
    response = send_feedback(base, other_pid, None, **bearer())
    assert response.status_code in (200, 409), response.text  # 409: the row may still be queued


def test_a_rotated_token_file_takes_effect_without_a_restart(secured, token_file):
    url = f"{secured.base_url}/api/v1/predictions/counts"
    new = "rotated-" + "y" * 30
    token_file.write_text(new)
    try:
        deadline = time.monotonic() + 10
        # Both workers re-read the file within a second; wait until neither takes the old one.
        while any(requests.get(url, headers=bearer(), timeout=10).status_code != 401 for _ in range(6)):
            assert time.monotonic() < deadline, "the old token still works"
            time.sleep(0.1)
        assert all(requests.get(url, headers=bearer(new), timeout=10).status_code == 200 for _ in range(6))
    finally:
        token_file.write_text(TOKEN + "\n")
        deadline = time.monotonic() + 10
        while any(requests.get(url, headers=bearer(), timeout=10).status_code != 200 for _ in range(6)):
            assert time.monotonic() < deadline, "the token was not restored"
            time.sleep(0.1)


def test_without_a_token_everything_is_open(open_server, png):
    base = open_server.base_url
    pid, signed, html = upload(base, png(5))
    assert signed is None and 'href="/predictions"' in html
    for method, url, kwargs in protected(base):
        response = requests.request(method, url, timeout=10, **kwargs)
        assert response.status_code != 401, (url, response.text)
        assert "WWW-Authenticate" not in response.headers
    deadline = time.monotonic() + 10
    while (response := send_feedback(base, pid, None)).status_code == 409:  # the row may be queued
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)
    assert response.status_code == 200, response.text


def test_the_fast_path_leaves_every_protected_route_to_flask(app, state):
    """The prediction routes are answered below Flask (``fast_path``), without its views'
    decorators: none of the protected routes may be among them."""
    from fashion_classifier.web.fast_path import FastPath

    fast = FastPath(app, state, 10**6)
    for method, url, _ in protected(""):
        for verb in {method, "POST"}:
            environ = {"REQUEST_METHOD": verb, "CONTENT_LENGTH": "10", "PATH_INFO": url.partition("?")[0]}
            assert fast._route(environ) is None, (verb, url)


def test_token_settings():
    assert ApiToken.from_settings(Settings()) is None
    with pytest.raises(ConfigError, match="not both"):
        ApiToken.from_settings(Settings(api_token="a", api_token_file=DEFAULT_MODEL_DIR))
    with pytest.raises(ConfigError, match="FC_API_TOKEN_FILE"):
        ApiToken.from_settings(Settings(api_token_file=DEFAULT_MODEL_DIR / "no-such-token"))
    assert "test-api" not in repr(Settings(api_token=TOKEN))
