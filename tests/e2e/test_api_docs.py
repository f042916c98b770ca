"""/docs in headless Chromium with JavaScript on: Swagger UI loads from this origin only, lists
every operation of /openapi.json, and "try it out" on POST /api/v1/predict classifies a real PNG.

Every Content-Security-Policy violation the page causes is recorded (a listener installed
before the page's own scripts run) and must be none: the page works under its strict policy.
"""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from harness.browser import chromium
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from fashion_classifier.config import CLASS_NAMES

pytestmark = pytest.mark.timeout(180)

RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
"""
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-docs") / "profile", javascript=True)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS})
    yield driver
    driver.quit()  # before the server stops (see conftest.browser)


@pytest.fixture(scope="module")
def docs_page(browser, server):
    """The browser on /docs once Swagger UI has rendered the operations."""
    browser.get(server.base_url + "/docs")
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "operations-api-post_api_v1_predict")))
    return browser


@pytest.fixture(scope="module")
def boot_png(test_split, encode, tmp_path_factory):
    """A real Fashion-MNIST test image (the first: an ankle boot) as a PNG file."""
    images, _ = test_split
    path = tmp_path_factory.mktemp("docs-upload") / f"test-image-0-{uuid.uuid4().hex[:8]}.png"
    path.write_bytes(encode(images[0], "PNG"))
    return path


def documented_operations(base_url: str) -> set[tuple[str, str]]:
    with urllib.request.urlopen(base_url + "/openapi.json", timeout=10) as r:
        paths = json.load(r)["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item if method in HTTP_METHODS}


def test_the_page_lists_every_operation_from_this_origin_only(docs_page, server):
    shown = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip(),
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in docs_page.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert shown == documented_operations(server.base_url)
    assert docs_page.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("fashion-classifier")
    loaded = docs_page.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert any(url.endswith("/openapi.json") for url in loaded), loaded
    assert all(url.startswith(server.base_url + "/") for url in loaded), loaded
    assert docs_page.execute_script("return window.cspViolations") == []
    header = docs_page.find_element(By.CSS_SELECTOR, "header a[href='/docs']")
    assert header.text == "API"


def test_try_it_out_classifies_a_png(docs_page, server, boot_png, artifacts_dir):
    operation = docs_page.find_element(By.ID, "operations-api-post_api_v1_predict")
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    WebDriverWait(operation, 10).until(lambda op: op.find_elements(By.CSS_SELECTOR, "button.try-out__btn"))
    operation.find_element(By.CSS_SELECTOR, "button.try-out__btn").click()
    content_type = operation.find_element(By.CSS_SELECTOR, "select.content-type")
    assert content_type.get_attribute("value") == "multipart/form-data"
    file_input = WebDriverWait(operation, 10).until(
        lambda op: op.find_element(By.CSS_SELECTOR, "tr[data-property-name='file'] input[type=file]")
    )
    file_input.send_keys(str(boot_png))
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()

    live = WebDriverWait(operation, 30).until(
        lambda op: op.find_elements(By.CSS_SELECTOR, ".live-responses-table tr.response")
    )
    docs_page.execute_script("arguments[0].scrollIntoView()", live[0])
    docs_page.save_screenshot(str(artifacts_dir / "docs-try-it-out.png"))
    (artifacts_dir / "docs-try-it-out.html").write_text(live[0].get_attribute("outerHTML"))
    assert live[0].find_element(By.CSS_SELECTOR, ".response-col_status").text.strip() == "200"
    body = operation.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre").text
    shown = json.loads(body)
    (prediction,) = shown["predictions"]
    assert prediction["label"] in CLASS_NAMES
    assert prediction["filename"] == boot_png.name
    # The same answer as the API gives a client for the same bytes.
    direct = api_predict(server.base_url, boot_png.read_bytes())
    assert prediction["label"] == direct["label"] and prediction["class"] == direct["class"]
    assert operation.find_element(By.CSS_SELECTOR, ".request-url pre").text == server.base_url + "/api/v1/predict"
    assert docs_page.execute_script("return window.cspViolations") == []


def api_predict(base_url: str, png: bytes) -> dict:
    request = urllib.request.Request(f"{base_url}/api/v1/predict", data=png, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.load(r)["predictions"][0]
