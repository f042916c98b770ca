"""The page's feedback form with an API token configured (issue 21 item 4), in headless Chromium.

The browser has no API token: the result page's form carries a signed feedback token for its
one prediction, so the correction is accepted, counted and stored; the history page, which
needs the token, answers 401 and is not linked from the header.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from harness.browser import chromium
from harness.server import start_serve
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from fashion_classifier.config import CLASS_NAMES

pytestmark = pytest.mark.timeout(180)

TOKEN = "e2e-api-token-" + "k" * 24


@pytest.fixture(scope="module")
def secured_server(store_copy, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN)
    srv = start_serve(
        tmp_path_factory.mktemp("e2e-secured"), store_copy, workers=2, extra_env={"FC_API_TOKEN_FILE": str(token_file)}
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def secured_browser(secured_server, tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-secured") / "profile", javascript=False)
    yield driver
    driver.quit()  # before the server stops (see conftest.browser)


def stored_label(base_url: str, prediction_id: str) -> int | None:
    request = urllib.request.Request(
        f"{base_url}/api/v1/predictions/{prediction_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.load(r)["true_label"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # the row is still queued for the log
            return None
        raise


def test_page_feedback_works_without_the_api_token(secured_browser, secured_server, upload_image, artifacts_dir):
    browser, base = secured_browser, secured_server.base_url
    browser.get(base + "/")
    assert not browser.find_elements(By.CSS_SELECTOR, 'header a[href="/predictions"]')
    form = browser.find_element(By.ID, "upload-form")
    form.find_element(By.NAME, "file").send_keys(str(upload_image.path))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    prediction_id = WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "prediction-id"))).text
    feedback = browser.find_element(By.ID, "feedback-form")
    assert feedback.find_element(By.NAME, "feedback_token").get_attribute("value")
    # A correction to another class, sent at once: the signed token needs no lookup of the row.
    wrong = (CLASS_NAMES.index(upload_image.keras_label) + 1) % len(CLASS_NAMES)
    Select(feedback.find_element(By.NAME, "true_label")).select_by_value(str(wrong))
    feedback.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    text = WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "feedback-result"))).text
    browser.save_screenshot(str(artifacts_dir / "06-feedback-with-token.png"))
    assert prediction_id in text and CLASS_NAMES[wrong] in text and upload_image.keras_label in text
    deadline = time.monotonic() + 15
    while stored_label(base, prediction_id) != wrong:
        assert time.monotonic() < deadline, "the feedback was not stored"
        time.sleep(0.05)


def test_history_page_needs_the_token(secured_browser, secured_server):
    secured_browser.get(secured_server.base_url + "/predictions")
    error = secured_browser.find_element(By.ID, "error").text
    assert "token" in error and not secured_browser.find_elements(By.ID, "predictions")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(secured_server.base_url + "/predictions", timeout=5)
    assert refused.value.code == 401 and refused.value.headers["WWW-Authenticate"].startswith("Bearer ")
