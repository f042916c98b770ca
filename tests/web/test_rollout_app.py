"""A rollout seen through the APIs: who answers, what V2 lists, what the log and the metrics say."""

from __future__ import annotations

import io
import uuid

import pytest
from inference.store_copies import other_version
from prometheus_client import REGISTRY

from fashion_classifier.artifacts import rollout, store


@pytest.fixture
def candidate(model_store):
    return other_version(model_store)


def answered_by(client, png, headers=None):
    response = client.post("/api/v1/predict", data={"file": (io.BytesIO(png(0)), "a.png")}, headers=headers or {})
    assert response.status_code == 200
    return response.get_json()["predictions"][0]


def v2(client, path, png_pixels):
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 28, 28], "data": png_pixels}]}
    return client.post(path, json=body)


def test_v2_lists_and_serves_both_versions(client, state, model_store, candidate, sample_images):
    current = state.model.version
    pixels = (sample_images[0][0] / 255.0).ravel().tolist()
    assert v2(client, f"/v2/models/fashion/versions/{candidate}/infer", pixels).status_code == 404
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 0)
    state.holder.check()
    assert client.get("/v2/models/fashion").get_json()["versions"] == [current, candidate]
    assert client.get(f"/v2/models/fashion/versions/{candidate}").status_code == 200
    assert client.get(f"/v2/models/fashion/versions/{candidate}/ready").status_code == 200
    for version in (candidate, current):  # at weight 0, the candidate still answers when named
        response = v2(client, f"/v2/models/fashion/versions/{version}/infer", pixels)
        assert response.status_code == 200 and response.get_json()["model_version"] == version
    assert v2(client, "/v2/models/fashion/infer", pixels).get_json()["model_version"] == current


def test_a_canary_answers_its_share_and_a_session_keeps_its_arm(client, state, model_store, candidate, png):
    current = state.model.version
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 50)
    state.holder.check()
    seen = {}
    for i in range(40):
        session = {"X-Session-ID": f"user-{i}"}
        first = answered_by(client, png, session)["model_version"]
        assert all(answered_by(client, png, session)["model_version"] == first for _ in range(3))
        seen[first] = seen.get(first, 0) + 1
    assert set(seen) == {current, candidate} and min(seen.values()) >= 8
    request_id = {"X-Request-ID": str(uuid.uuid4())}
    assert len({answered_by(client, png, request_id)["model_version"] for _ in range(5)}) == 1
    rollout.rollback(model_store)
    state.holder.check()
    assert {answered_by(client, png, {"X-Session-ID": f"user-{i}"})["model_version"] for i in range(40)} == {current}


def test_the_log_and_the_metrics_name_the_version_that_answered(client, state, model_store, candidate, png):
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 100)
    state.holder.check()
    before = _predictions(candidate, "candidate")
    answer = answered_by(client, png)
    assert answer["model_version"] == candidate
    assert _predictions(candidate, "candidate") == before + 1
    state.predlog.flush()
    row = state.predlog.get(uuid.UUID(answer["prediction_id"]))
    assert (row.model_version, row.arm, row.shadow_version) == (candidate, "candidate", None)


def test_a_shadow_predicts_every_request_unseen(client, state, model_store, candidate, png):
    current = state.model.version
    rollout.set_candidate(model_store, candidate, rollout.SHADOW)
    state.holder.check()
    before = _shadow(candidate)
    answers = [answered_by(client, png) for _ in range(10)]
    assert {a["model_version"] for a in answers} == {current}
    state.classifier.close()  # the shadow's queue is finished: its rows are handed to the log
    assert _shadow(candidate) == before + 10
    state.predlog.flush()
    for answer in answers:
        row = state.predlog.get(uuid.UUID(answer["prediction_id"]))
        assert (row.model_version, row.arm, row.shadow_version) == (current, "current", candidate)
        assert 0 <= row.shadow_class < 10 and 0.1 <= row.shadow_confidence <= 1.0


def test_promotion_is_seen_at_the_next_check(client, state, model_store, candidate, png):
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 0)
    state.holder.check()
    rollout.promote(model_store)
    state.holder.check()
    assert answered_by(client, png)["model_version"] == candidate == store.current_version(model_store)
    assert client.get("/v2/models/fashion").get_json()["versions"] == [candidate]


def _predictions(version, arm):
    return sum(
        s.value
        for family in REGISTRY.collect()
        if family.name == "fc_predictions"
        for s in family.samples
        if s.name == "fc_predictions_total" and s.labels.get("model_version") == version and s.labels["arm"] == arm
    )


def _shadow(version):
    return sum(
        REGISTRY.get_sample_value("fc_shadow_predictions_total", {"model_version": version, "agreed": a}) or 0
        for a in ("true", "false")
    )


def test_the_model_card_compares_the_arms_during_a_rollout(client, state, model_store, candidate, png):
    assert 'id="rollout"' not in client.get("/model").get_data(as_text=True)
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 100)
    state.holder.check()
    answer = answered_by(client, png)
    client.post("/api/v1/feedback", json={"prediction_id": answer["prediction_id"], "true_label": answer["class"]})
    state.predlog.flush()
    page = client.get("/model").get_data(as_text=True)
    assert 'id="rollout"' in page and f"<strong>{candidate}</strong>" in page and "for 100 % of requests" in page
    row = page[page.index('id="arms"') :]
    assert "candidate</td><td>" + candidate in row and "100.0 %" in row


def test_with_an_api_token_the_model_card_shows_the_comparison_to_its_holders_only(make_app, model_store, candidate):
    app = make_app(api_token="s3cret")
    client = app.test_client()
    rollout.set_candidate(model_store, candidate, rollout.SHADOW)
    app.extensions["fashion_classifier"].holder.check()
    anonymous = client.get("/model").get_data(as_text=True)
    assert 'id="rollout"' in anonymous and "send the API token" in anonymous and 'id="arms"' not in anonymous
    holder = client.get("/model", headers={"Authorization": "Bearer s3cret"}).get_data(as_text=True)
    assert 'id="arms"' in holder and "in the shadow of every request" in holder
