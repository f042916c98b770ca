"""Hot reload seen through the API: new versions answer without a restart; bad ones never do."""

from __future__ import annotations

import io

from inference.store_copies import corrupt_current, publish_copy


def version_of(client, png):
    response = client.post("/api/v1/predict", data={"file": (io.BytesIO(png(0)), "a.png")})
    assert response.status_code == 200
    return response.get_json()["predictions"][0]["model_version"]


def test_published_version_is_served_after_the_next_check(client, state, model_store, png):
    old = version_of(client, png)
    new = publish_copy(model_store, "next")
    assert version_of(client, png) == old  # not yet checked
    state.holder.check()
    assert version_of(client, png) == new
    assert client.get("/v2/models/fashion").get_json()["versions"] == [new]


def test_bad_version_is_refused_and_the_old_one_keeps_serving(client, state, model_store, png):
    old = version_of(client, png)
    publish_copy(model_store, "broken")
    corrupt_current(model_store)
    state.holder.check()
    assert version_of(client, png) == old
    assert client.get("/v2/health/ready").status_code == 200
