"""Hot reload: new versions are swapped in atomically; bad ones are refused, the old one serves."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from fashion_classifier.artifacts import rollout, store
from fashion_classifier.inference.reloader import ModelHolder

from .store_copies import corrupt_current, other_version, publish_beside, publish_copy


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_initial_load_sets_ready_and_model_info(model_store):
    holder = ModelHolder(model_store, reload_interval=0)
    assert not holder.ready
    assert holder.check() is True
    assert holder.ready and holder.model.version == store.current_version(model_store)
    assert sample("fc_model_ready") == 1.0
    arch = holder.model.metadata["architecture"]
    assert sample("fc_model_info", {"version": holder.model.version, "architecture": arch}) == 1.0
    assert holder.check() is False  # same version: nothing to do


def test_new_version_is_swapped_in_and_old_references_stay_valid(model_store):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    in_flight = holder.model  # what a running request holds
    reloads = sample("fc_model_reloads_total")
    new = publish_copy(model_store, "v2")
    assert holder.check() is True
    assert holder.model.version == new and holder.model is not in_flight
    assert in_flight.predictor.predict(np.zeros((1, 28, 28), np.float32)).shape == (1, 10)
    assert sample("fc_model_reloads_total") == reloads + 1
    arch = in_flight.metadata["architecture"]  # publish_copy copies the current version
    assert sample("fc_model_info", {"version": new, "architecture": arch}) == 1.0
    assert sample("fc_model_info", {"version": in_flight.version, "architecture": arch}) == 0.0


def test_checksum_mismatch_is_refused_and_not_retried(model_store, caplog):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    serving = holder.model
    failures = sample("fc_model_load_failures_total")
    publish_copy(model_store, "bad")
    corrupt_current(model_store)
    assert holder.check() is False
    assert holder.model is serving
    assert "checksum" in holder.last_error
    assert sample("fc_model_load_failures_total") == failures + 1
    assert holder.check() is False
    assert sample("fc_model_load_failures_total") == failures + 1  # refused once, not every poll
    assert any("refused" in r.message for r in caplog.records)


def test_export_that_cannot_load_is_refused(model_store):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    serving = holder.model
    publish_copy(model_store, "garbage", tflite=b"\x00" * 4096)
    assert holder.check() is False
    assert holder.model is serving and holder.ready


def test_a_fixed_version_after_a_bad_one_is_loaded(model_store):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    publish_copy(model_store, "garbage", tflite=b"\x00" * 4096)
    assert holder.check() is False
    store.set_current(model_store, store.list_versions(model_store)[0])
    good = publish_copy(model_store, "good")
    assert holder.check() is True and holder.model.version == good


def test_empty_store_is_not_ready_until_a_version_appears(tmp_path, model_store):
    empty = tmp_path / "empty"
    holder = ModelHolder(empty, reload_interval=0)
    assert holder.check() is False and not holder.ready
    assert sample("fc_model_ready") == 0.0
    store.versions_dir(empty).mkdir(parents=True)
    version = store.current_version(model_store)
    import shutil

    shutil.copytree(store.version_path(model_store, version), store.version_path(empty, version))
    store.set_current(empty, version)
    assert holder.check() is True and holder.ready


def test_watcher_thread_picks_up_new_versions(model_store):
    holder = ModelHolder(model_store, reload_interval=0.05)
    holder.check()
    holder.start()
    try:
        new = publish_copy(model_store, "watched")
        deadline = time.monotonic() + 10
        while holder.model.version != new and time.monotonic() < deadline:
            time.sleep(0.02)
        assert holder.model.version == new
    finally:
        holder.stop()
    assert holder._thread is None


@pytest.mark.parametrize("interval", [0, -1])
def test_no_watcher_without_an_interval(model_store, interval):
    holder = ModelHolder(model_store, reload_interval=interval)
    holder.start()
    assert holder._thread is None


def test_a_candidate_is_loaded_beside_the_current_version(model_store):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    current = holder.model
    candidate = other_version(model_store)
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 25)
    assert holder.check() is True
    serving = holder.serving
    assert serving.current is current and serving.candidate.version == candidate
    assert (serving.mode, serving.weight) == (rollout.CANARY, 25.0)
    labels = {"version": candidate, "architecture": "mlp", "mode": "canary", "weight": "25"}
    assert sample("fc_model_candidate_info", labels) == 1.0
    rollout.set_candidate(model_store, candidate, rollout.CANARY, 50)
    assert holder.check() is True and holder.serving.candidate is serving.candidate  # a new weight loads nothing
    assert sample("fc_model_candidate_info", labels) == 0.0
    assert holder.check() is False


def test_promotion_reuses_the_loaded_candidate_and_rollback_drops_it(model_store):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    old = holder.model
    rollout.set_candidate(model_store, other_version(model_store), rollout.SHADOW)
    holder.check()
    candidate = holder.serving.candidate
    loads = sample("fc_model_load_seconds_count")
    rollout.promote(model_store)
    assert holder.check() is True
    assert holder.model is candidate and holder.serving.candidate is None  # no load: the same object
    assert sample("fc_model_load_seconds_count") == loads
    rollout.rollback(model_store)
    assert holder.check() is True and holder.model.version == old.version and holder.serving.candidate is None


def test_the_store_s_rollout_moves_are_counted_by_action(model_store):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    assert {a: sample("fc_rollout_moves", {"action": a}) for a in rollout.ACTIONS} == dict.fromkeys(rollout.ACTIONS, 0)
    candidate = rollout.set_candidate(model_store, other_version(model_store), rollout.CANARY, 10)
    rollout.withdraw(model_store, rollout.AUTO_ROLLBACK, why="worse", expected=candidate)
    rollout.set_candidate(model_store, candidate.version, rollout.SHADOW)
    holder.check()  # the candidate is the same: only the count moved
    counts = {a: sample("fc_rollout_moves", {"action": a}) for a in rollout.ACTIONS}
    assert counts == {**dict.fromkeys(rollout.ACTIONS, 0), "set": 2, "auto-rollback": 1}
    with open(model_store / rollout.HISTORY, "a") as fh:  # odd lines count as nothing, and stop nothing
        fh.write('{"action": ["set"]}\n{"action": "promote", "version": "v"}\n{"action": "prom')
    holder.check()
    assert sample("fc_rollout_moves", {"action": "promote"}) == 1 and sample("fc_rollout_moves", {"action": "set"}) == 2


def test_a_broken_candidate_is_refused_and_the_current_version_serves_alone(model_store, caplog):
    holder = ModelHolder(model_store, reload_interval=0)
    holder.check()
    current = holder.model
    broken = publish_beside(model_store, "garbage", tflite=b"\x00" * 4096)
    failures = sample("fc_model_load_failures_total")
    rollout.set_candidate(model_store, broken, rollout.CANARY, 50)
    assert holder.check() is False
    assert holder.serving.current is current and holder.serving.candidate is None
    assert holder.check() is False
    assert sample("fc_model_load_failures_total") == failures + 1  # refused once
    assert any("refused" in r.message for r in caplog.records)


HUGE_WEIGHT = b'{"version": "v", "mode": "canary", "weight": 1' + b"0" * 5000 + b"}"


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", HUGE_WEIGHT])
def test_an_unreadable_candidate_file_is_ignored_from_the_first_check(model_store, raw):
    (model_store / rollout.CANDIDATE).write_bytes(raw)
    holder = ModelHolder(model_store, reload_interval=0)
    assert holder.check() is True and holder.serving.candidate is None  # a worker still starts
    assert "rollout candidate ignored" in holder.last_error
    new = publish_copy(model_store, "next")
    assert holder.check() is True and holder.model.version == new  # and still follows CURRENT
