"""The web page as a person uses it, in headless Chromium with JavaScript off (issue 3).

Upload a real Fashion-MNIST test image through the form, read the class from the page and
compare it with Keras's prediction for the same image; then the recent-predictions page and
the model card. Each step leaves a full-page screenshot in the test artifacts.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from fashion_classifier.artifacts.store import current_path, current_version, load_metadata
from fashion_classifier.config import CLASS_NAMES

pytestmark = pytest.mark.timeout(180)


def screenshot(driver, path) -> None:
    """The whole page, not just the window (DevTools protocol, works without page JavaScript)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    path.with_suffix(".html").write_text(driver.page_source)


def wait_until_logged(base_url: str, prediction_id: str, headers: dict[str, str] | None = None) -> None:
    """Wait until the prediction log has the row (it is written in the background)."""
    deadline = time.monotonic() + 15
    request = urllib.request.Request(f"{base_url}/api/v1/predictions/{prediction_id}", headers=headers or {})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@pytest.fixture(scope="module")
def result_page(browser, server, upload_image, artifacts_dir):
    """Upload the image with the form; the browser is left on the result page."""
    browser.get(server.base_url + "/")
    form = browser.find_element(By.ID, "upload-form")
    screenshot(browser, artifacts_dir / "01-upload-form.png")
    form.find_element(By.CSS_SELECTOR, "input[type=file][name=file]").send_keys(str(upload_image.path))
    form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "predicted-label")))
    screenshot(browser, artifacts_dir / "02-result.png")
    return browser


def test_upload_form_names_the_accepted_formats(browser, server):
    browser.get(server.base_url + "/")
    text = browser.find_element(By.TAG_NAME, "body").text.lower()
    for ext in ("png", "jpg", "jpeg", "gif", "bmp"):
        assert ext in text, f"the upload page does not mention {ext}"
    accept = browser.find_element(By.CSS_SELECTOR, "#upload-form input[name=file]").get_attribute("accept")
    assert all(ext in accept for ext in (".png", ".jpg", ".jpeg", ".gif", ".bmp")), accept


def test_uploaded_image_gets_the_keras_class(result_page, upload_image, store_copy):
    label = result_page.find_element(By.ID, "predicted-label").text.strip()
    assert label == upload_image.keras_label, (
        f"page says {label!r}, Keras says {upload_image.keras_label!r} for test image {upload_image.index}"
    )
    assert label == upload_image.true_label
    assert result_page.find_element(By.ID, "model-version").text.strip() == current_version(store_copy)


def test_result_shows_top3_bars_in_order(result_page, upload_image):
    items = result_page.find_elements(By.CSS_SELECTOR, "#top3 li")
    assert len(items) == 3
    names = [li.find_element(By.CLASS_NAME, "top3-label").text.strip() for li in items]
    percents = [
        float(li.find_element(By.CLASS_NAME, "top3-probability").text.strip().rstrip("%").strip()) for li in items
    ]
    assert names[0] == upload_image.keras_label
    assert len(set(names)) == 3 and set(names) <= set(CLASS_NAMES)
    assert percents == sorted(percents, reverse=True)
    assert percents[0] == pytest.approx(upload_image.keras_confidence * 100, abs=0.06)
    bars = [li.find_element(By.CSS_SELECTOR, ".bar span").size["width"] for li in items]
    assert bars[0] > bars[2] >= 0, "bar widths do not follow the probabilities"
    shown = result_page.find_element(By.ID, "uploaded-image")
    assert shown.size["width"] > 0 and shown.size["height"] > 0


def test_recent_predictions_page_lists_the_upload(result_page, server, upload_image, artifacts_dir):
    # The log writes in the background: give it a few seconds.
    deadline = time.monotonic() + 15
    while True:
        result_page.get(server.base_url + "/predictions")
        rows = result_page.find_elements(By.CSS_SELECTOR, "#predictions tbody tr")
        mine = [r for r in rows if r.find_element(By.CLASS_NAME, "filename").text == upload_image.path.name]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    screenshot(result_page, artifacts_dir / "03-predictions.png")
    assert mine, f"{upload_image.path.name} not among {len(rows)} recent predictions"
    assert upload_image.keras_label in mine[0].text


def test_model_card_shows_the_artifact(browser, server, store_copy, artifacts_dir):
    browser.get(server.base_url + "/model")
    screenshot(browser, artifacts_dir / "04-model-card.png")
    meta = load_metadata(current_path(store_copy))
    assert browser.find_element(By.ID, "test-accuracy").text == f"{meta['test_accuracy']:.4f}"
    rows = browser.find_elements(By.CSS_SELECTOR, "#per-class tbody tr")
    # Label order 0-9 (metadata.json stores the classes sorted by name).
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == list(CLASS_NAMES)
    assert set(CLASS_NAMES) == set(meta["per_class"])
    image = browser.find_element(By.ID, "confusion-matrix")
    assert image.size["width"] > 200, "the confusion matrix image did not load"
    with urllib.request.urlopen(server.base_url + image.get_attribute("src").removeprefix(server.base_url)) as r:
        assert r.headers["Content-Type"] == "image/png"
        assert r.read() == (current_path(store_copy) / "confusion_matrix.png").read_bytes()


def test_feedback_form_records_the_true_label(result_page, server, upload_image, artifacts_dir):
    result_page.get(server.base_url + "/")
    form = result_page.find_element(By.ID, "upload-form")
    form.find_element(By.NAME, "file").send_keys(str(upload_image.path))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    prediction_id = WebDriverWait(result_page, 15).until(ec.presence_of_element_located((By.ID, "prediction-id"))).text
    # Without an API token the form's feedback is looked up, and answered at once: 409 while the
    # other worker's row is still queued for the log. A person takes longer than that; wait for it.
    wait_until_logged(server.base_url, prediction_id)
    feedback = result_page.find_element(By.ID, "feedback-form")
    feedback.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # the predicted label, preselected
    text = WebDriverWait(result_page, 15).until(ec.presence_of_element_located((By.ID, "feedback-result"))).text
    screenshot(result_page, artifacts_dir / "05-feedback.png")
    assert prediction_id in text and upload_image.keras_label in text and "correct" in text
    with urllib.request.urlopen(server.metrics_url) as r:
        exposition = r.read().decode()
    line = next(
        (ln for ln in exposition.splitlines() if ln.startswith("fc_feedback_total{") and 'correct="true"' in ln),
        None,
    )
    assert line is not None and float(line.rsplit(" ", 1)[1]) >= 1, "feedback not counted in fc_feedback_total"
