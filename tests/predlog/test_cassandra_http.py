"""The web API with the Cassandra log on the real cluster: round trip and odd filenames."""

from __future__ import annotations

import dataclasses
import io
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from fashion_classifier.predlog import open_log
from fashion_classifier.web import create_app
from fashion_classifier.web.inputs import capped_filename
from fashion_classifier.web.state import EXTENSION

from .conftest import cassandra_settings, eventually, stored_ids

pytestmark = pytest.mark.cassandra


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), mode="L").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app(keyspace, model_store, tmp_path):
    settings = dataclasses.replace(
        cassandra_settings(keyspace, tmp_path / "spool"), model_dir=model_store, reload_interval=0
    )
    app = create_app(settings, open_log(settings))
    app.testing = True
    state = app.extensions[EXTENSION]
    deadline = time.monotonic() + 30
    while not state.predlog.connected:  # the first record() would connect; reads need it now
        assert time.monotonic() < deadline, "no connection to the local cluster"
        time.sleep(0.1)
    yield app
    state.close()


def _predict(client, data: bytes, filename: str) -> dict:
    resp = client.post(
        "/api/v1/predict",
        data={"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["predictions"][0]


def _stored(client, prediction_id: str) -> dict:
    resp = client.get(f"/api/v1/predictions/{prediction_id}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def test_http_round_trip(app, admin_session, keyspace):
    client = app.test_client()
    sent = [_predict(client, png(i), f"item-{i}.png") for i in range(30)]
    assert app.extensions[EXTENSION].predlog.flush()
    today = datetime.now(UTC).date()
    expected = sorted(p["prediction_id"] for p in sent)
    eventually(lambda: expected == sorted(map(str, stored_ids(admin_session, keyspace, [today]))))

    def list_all() -> list[dict]:
        listed, token = [], None
        while True:
            query = {"day": today.isoformat(), "limit": 7} | ({"page_state": token} if token else {})
            body = client.get("/api/v1/predictions", query_string=query).get_json()
            listed += body["predictions"]
            token = body["page_state"]
            if not token:
                break
        assert [row["prediction_id"] for row in listed] == [p["prediction_id"] for p in reversed(sent)]
        return listed

    listed = eventually(list_all)
    by_id = {row["prediction_id"]: row for row in listed}
    for p in sent:
        row = by_id[p["prediction_id"]]
        assert row["label"] == p["label"] and row["class"] == p["class"]
        assert row["confidence"] == pytest.approx(p["confidence"], abs=1e-6)
        assert row["model_version"] == p["model_version"]
        assert row["source"] == "api" and row["filename"] == p["filename"]
        assert (row["image_width"], row["image_height"]) == (28, 28)
        assert [t["label"] for t in row["top3"]] == [t["label"] for t in p["top3"]]

    counts = client.get("/api/v1/predictions/counts", query_string={"day": today.isoformat()}).get_json()
    assert counts["total"] == 30 and sum(counts["counts"].values()) == 30

    target = sent[4]["prediction_id"]
    resp = client.post("/api/v1/feedback", json={"prediction_id": target, "true_label": 2})
    assert resp.status_code < 300, resp.get_data(as_text=True)
    assert app.extensions[EXTENSION].predlog.flush()

    def labelled() -> None:
        one = client.get(f"/api/v1/predictions/{target}").get_json()
        assert one["prediction_id"] == target and one["true_label"] == 2

    eventually(labelled)


ODD_NAMES = [
    "quote'single.png",
    'quote"double.png',
    "back\\slash.png",
    "日本語 ✓ 🙂 Ünïcödé.png",
    "../../../etc/passwd",
    "..\\..\\windows\\system32.png",
    "<script>alert(1)</script>.png",
    "'); DROP TABLE predictions_by_day; --.png",
    "n" * 10_240 + ".png",
]


def test_odd_filenames_are_stored_as_data_only(app, tmp_path):
    client = app.test_client()
    sent = [_predict(client, png(100 + i), name) for i, name in enumerate(ODD_NAMES)]
    assert app.extensions[EXTENSION].predlog.flush()
    for p, name in zip(sent, ODD_NAMES, strict=True):
        row = eventually(lambda pid=p["prediction_id"]: _stored(client, pid))
        # stored exactly as the service received it...
        assert row["filename"] == p["filename"]
        # ...which is the name itself (its first 255 characters), except where multipart quoting
        # cannot carry a character unchanged (a double quote or a backslash inside filename="...")
        if '"' not in name and "\\" not in name:
            assert row["filename"] == capped_filename(name)
    # nothing was created from a filename anywhere near the service's files
    assert not any("passwd" in str(path) or "script" in str(path) for path in tmp_path.rglob("*"))
    page = client.get("/predictions")  # the recent-predictions page
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
