"""The server-rendered pages: upload form and result, recent predictions, model card."""

from __future__ import annotations

import base64
import io
import re

from fashion_classifier.config import CLASS_NAMES

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)<', html, re.S)
    assert match, f"no element with id {element_id}"
    return match.group(1).strip()


def test_index_has_the_upload_form(client, state):
    html = client.get("/").get_data(as_text=True)
    assert 'id="upload-form"' in html and 'enctype="multipart/form-data"' in html and 'name="file"' in html
    for ext in ("png", "jpg", "jpeg", "gif", "bmp"):
        assert ext in html
    assert text_of(html, "model-version") == state.model.version
    assert "<script" not in html


def test_upload_shows_image_class_top3_and_version(client, state, png, sample_images):
    response = client.post("/", data={"file": (io.BytesIO(png(0)), "boot.png")}, headers=HTML)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    label = text_of(html, "predicted-label")
    expected = state.model.predictor.predict(sample_images[0][:1] / 255.0)[0]
    assert label == CLASS_NAMES[int(expected.argmax())]
    assert text_of(html, "model-version") == state.model.version
    top3 = re.search(r'id="top3".*?</ol>', html, re.S).group(0)
    assert top3.count("<li>") == 3 and label in top3
    assert re.search(r'style="width: [0-9.]+%"', top3)
    assert "data:image/png;base64," + base64.b64encode(png(0)).decode() in html  # the upload itself
    assert 'id="model-input"' in html


def test_filenames_are_escaped_everywhere(client, state, png):
    evil = '<script>alert("x")</script>.png'
    html = client.post("/", data={"file": (io.BytesIO(png(1)), evil)}, headers=HTML).get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;" in html
    state.predlog.flush(timeout=10)
    page = client.get("/predictions").get_data(as_text=True)
    assert "<script>" not in page and "&lt;script&gt;alert" in page


def test_recent_predictions_page_lists_uploads(client, state, png):
    client.post("/", data={"file": (io.BytesIO(png(2)), "pullover.png")}, headers=HTML)
    state.predlog.flush(timeout=10)
    page = client.get("/predictions").get_data(as_text=True)
    assert 'id="predictions"' in page and "pullover.png" in page and "upload" in page


def test_feedback_form(client, png):
    html = client.post("/", data={"file": (io.BytesIO(png(0)), "a.png")}, headers=HTML).get_data(as_text=True)
    prediction_id = text_of(html, "prediction-id")
    response = client.post("/feedback", data={"prediction_id": prediction_id, "true_label": "9"}, headers=HTML)
    assert response.status_code == 200 and "Ankle boot" in response.get_data(as_text=True)
    response = client.post("/feedback", data={"prediction_id": "nope", "true_label": "9"}, headers=HTML)
    assert response.status_code == 400 and 'class="error"' in response.get_data(as_text=True)


def test_bad_upload_rerenders_the_form_with_the_error(client):
    response = client.post("/", data={"file": (io.BytesIO(b"not an image"), "notes.txt")}, headers=HTML)
    assert response.status_code == 415 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'id="upload-form"' in html and "unsupported image type" in html
    response = client.post("/", data={"file": (io.BytesIO(b"not an image"), "notes.txt")})
    assert response.status_code == 415 and response.get_json()["error"]  # API clients get JSON


def test_model_card(client, state):
    html = client.get("/model").get_data(as_text=True)
    meta = state.model.metadata
    assert text_of(html, "test-accuracy") == f"{meta['test_accuracy']:.4f}"
    table = re.search(r'id="per-class".*?</table>', html, re.S).group(0)
    assert table.count("<tr>") == 11
    rows = re.findall(r"<tr><td>(.*?)</td>", table)
    assert [r.replace("&#39;", "'") for r in rows] == list(CLASS_NAMES)  # label order 0-9, not alphabetical
    assert 'src="/model/confusion_matrix.png"' in html
    image = client.get("/model/confusion_matrix.png")
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.data == (state.model.path / "confusion_matrix.png").read_bytes()
    assert client.get("/model/secrets.png").status_code == 404


def test_browser_404_is_a_page(client):
    response = client.get("/no/such/page", headers=HTML)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert client.get("/no/such/page").get_json()["error"]
