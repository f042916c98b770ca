"""Feedback and the prediction history endpoints, with the real SQLite prediction log."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.web.state import EXTENSION


def predict(client, png, *indexes):
    data = {"file": [(io.BytesIO(png(i)), f"img{i}.png") for i in indexes]}
    response = client.post("/api/v1/predict", data=data)
    assert response.status_code == 200
    return response.get_json()["predictions"]


def feedback_count(version, correct):
    return REGISTRY.get_sample_value("fc_feedback_total", {"model_version": version, "correct": correct}) or 0.0


def test_feedback_counts_per_version_and_is_stored(client, state, png):
    (result,) = predict(client, png, 0)
    version = result["model_version"]
    right, wrong = feedback_count(version, "true"), feedback_count(version, "false")
    response = client.post(
        "/api/v1/feedback", json={"prediction_id": result["prediction_id"], "true_label": result["class"]}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["correct"] is True and body["model_version"] == version
    other = (result["class"] + 1) % 10
    body = client.post(
        "/api/v1/feedback", json={"prediction_id": result["prediction_id"], "true_label": CLASS_NAMES[other]}
    ).get_json()
    assert body["correct"] is False and body["true_label"] == other
    assert feedback_count(version, "true") == right + 1
    assert feedback_count(version, "false") == wrong + 1
    assert state.predlog.flush(timeout=10)
    stored = client.get(f"/api/v1/predictions/{result['prediction_id']}").get_json()
    assert stored["true_label"] == other and stored["true_label_name"] == CLASS_NAMES[other]


def test_feedback_from_another_process_is_found_in_the_log(make_app, png):
    first, second = make_app(), make_app()  # two workers sharing one SQLite log
    (result,) = predict(first.test_client(), png, 1)
    assert first.extensions[EXTENSION].predlog.flush(timeout=10)
    response = second.test_client().post(
        "/api/v1/feedback", json={"prediction_id": result["prediction_id"], "true_label": 0}
    )
    assert response.status_code == 200, response.get_json()


def test_feedback_on_a_row_not_written_yet_is_answered_at_once(make_app, png):
    """Another worker's prediction still queued for the log: 409 with Retry-After at once (the
    handler never waits for the log), then 200 once the row is written."""
    first, second = make_app(), make_app()
    predlog = first.extensions[EXTENSION].predlog
    held = []
    predlog.record_batch = held.append  # the row stays "queued" until handed on below
    (result,) = predict(first.test_client(), png, 2)
    started = time.monotonic()
    response = second.test_client().post(
        "/api/v1/feedback", json={"prediction_id": result["prediction_id"], "true_label": 0}
    )
    assert time.monotonic() - started < 0.5
    assert response.status_code == 409, response.get_json()
    assert response.headers["Retry-After"] == "1" and "retry" in response.get_json()["error"]
    del predlog.record_batch
    for batch in held:
        predlog.record_batch(batch)
    assert predlog.flush(timeout=10)
    response = second.test_client().post(
        "/api/v1/feedback", json={"prediction_id": result["prediction_id"], "true_label": 0}
    )
    assert response.status_code == 200, response.get_json()


def test_unknown_feedback_ids_are_answered_at_once(client):
    """A made-up id, old or recent-looking: one look, no polling of the log (issue 21 item 2)."""
    for pid, status in ((uuid.uuid1(), 409), (uuid.uuid4(), 404), (uuid.UUID(int=1 << 76 | 1), 404)):
        started = time.monotonic()
        response = client.post("/api/v1/feedback", json={"prediction_id": str(pid), "true_label": 1})
        assert response.status_code == status, response.get_json()
        assert time.monotonic() - started < 0.5


def test_bad_feedback(client):
    def post(body, status):
        response = client.post("/api/v1/feedback", json=body)
        assert response.status_code == status, response.get_json()
        assert response.get_json()["error"]

    post({"prediction_id": str(uuid.uuid4()), "true_label": 1}, 404)
    post({"prediction_id": "not-a-uuid", "true_label": 1}, 400)
    post({"prediction_id": str(uuid.uuid1()), "true_label": 10}, 400)
    post({"prediction_id": str(uuid.uuid1()), "true_label": "Hat"}, 400)
    post({"prediction_id": str(uuid.uuid1()), "true_label": True}, 400)
    post({"true_label": 1}, 400)
    post([1], 400)
    response = client.post("/api/v1/feedback", data="x", content_type="text/plain")
    assert response.status_code == 415


def test_history_by_day_with_paging_and_counts(client, state, png):
    results = predict(client, png, *range(5))
    assert state.predlog.flush(timeout=10)
    today = datetime.now(UTC).date().isoformat()
    first = client.get(f"/api/v1/predictions?day={today}&limit=3").get_json()
    assert first["day"] == today and len(first["predictions"]) == 3 and first["page_state"]
    rest = client.get(
        "/api/v1/predictions", query_string={"day": today, "limit": 3, "page_state": first["page_state"]}
    ).get_json()
    assert len(rest["predictions"]) == 2 and rest["page_state"] is None
    ids = [p["prediction_id"] for p in first["predictions"] + rest["predictions"]]
    assert sorted(ids) == sorted(r["prediction_id"] for r in results)
    row = first["predictions"][0]
    assert row["source"] == "api" and row["filename"].startswith("img") and row["image_width"] == 28
    counts = client.get(f"/api/v1/predictions/counts?day={today}").get_json()
    assert list(counts["counts"]) == list(CLASS_NAMES) and counts["total"] == 5
    assert client.get("/api/v1/predictions?day=2001-01-01").get_json()["predictions"] == []


def test_history_bad_arguments(client):
    for query, status in [
        ("day=yesterday", 400),
        ("day=2024-02-30", 400),
        ("limit=0", 400),
        ("limit=abc", 400),
        ("limit=100000", 400),
        ("page_state=garbage", 400),
    ]:
        response = client.get(f"/api/v1/predictions?{query}")
        assert response.status_code == status, query
        assert response.get_json()["error"]
    assert client.get("/api/v1/predictions/not-a-uuid").status_code == 400
    assert client.get(f"/api/v1/predictions/{uuid.uuid1()}").status_code == 404
    assert client.get("/api/v1/predictions/counts?day=nope").status_code == 400


def test_model_endpoint(client, state):
    body = client.get("/api/v1/model").get_json()
    assert body["version"] == state.model.version
    assert 0.5 < body["test_accuracy"] <= 1.0 and set(body["per_class"]) == set(CLASS_NAMES)
