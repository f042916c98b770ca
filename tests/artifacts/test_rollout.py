"""Rollout moves on a store: a candidate beside CURRENT, promoted, withdrawn or rolled back."""

from __future__ import annotations

import json

import pytest

from fashion_classifier.artifacts import rollout, store


def _publish(model_dir, version):
    staged = store.staging_dir(model_dir)
    (staged / store.TFLITE).write_bytes(version.encode())
    store.write_metadata(staged, {"version": version})
    store.publish(model_dir, staged, version, keep=10)


@pytest.fixture
def two(tmp_path):
    """A store with v1 and v2 published, v1 current."""
    _publish(tmp_path, "v2")
    _publish(tmp_path, "v1")
    return tmp_path


def test_canary_then_promote_then_rollback_restores_the_previous_current(two):
    assert rollout.read_candidate(two) is None
    candidate = rollout.set_candidate(two, "v2", rollout.CANARY, 12.5)
    assert rollout.read_candidate(two) == candidate and candidate.weight == 12.5
    assert store.current_version(two) == "v1"
    assert rollout.promote(two) == candidate
    assert store.current_version(two) == "v2" and rollout.read_candidate(two) is None
    assert "v1 is the current version again" in rollout.rollback(two)
    assert store.current_version(two) == "v1"
    assert [m["action"] for m in rollout.history(two)] == ["set", "promote", "demote"]
    with pytest.raises(store.ArtifactError, match="no candidate"):
        rollout.rollback(two)  # v1 was not promoted: nothing to undo


def test_rollback_withdraws_a_candidate_and_keeps_current(two):
    rollout.set_candidate(two, "v2", rollout.SHADOW, 30)
    assert rollout.read_candidate(two).weight == 0.0  # a shadow answers no request
    assert "withdrew v2" in rollout.rollback(two)
    assert rollout.read_candidate(two) is None and store.current_version(two) == "v1"


@pytest.mark.parametrize(
    ("version", "mode", "weight", "message"),
    [
        ("v3", rollout.CANARY, 10, "not published"),
        ("v1", rollout.CANARY, 10, "already the current"),
        ("v2", "blue-green", 10, "not one of"),
        ("v2", rollout.CANARY, 100.5, "percentage"),
        ("v2", rollout.CANARY, float("nan"), "percentage"),
        ("../v2", rollout.CANARY, 10, "invalid version"),
    ],
)
def test_bad_moves_are_refused_and_change_nothing(two, version, mode, weight, message):
    with pytest.raises(store.ArtifactError, match=message):
        rollout.set_candidate(two, version, mode, weight)
    assert rollout.read_candidate(two) is None
    with pytest.raises(store.ArtifactError, match="no candidate"):
        rollout.promote(two)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"version": "v2"}',
        '{"version": "v2", "mode": "canary", "weight": "ten"}',
        '{"version": "../x", "mode": "canary"}',
    ],
)
def test_a_file_that_is_not_a_candidate_is_named(two, text):
    (two / rollout.CANDIDATE).write_text(text)
    with pytest.raises(store.ArtifactError, match="CANDIDATE|invalid version"):
        rollout.read_candidate(two)


def test_the_file_is_json_that_old_servers_never_read(two):
    rollout.set_candidate(two, "v2", rollout.CANARY, 5)
    raw = json.loads((two / rollout.CANDIDATE).read_text())
    assert raw["version"] == "v2" and raw["mode"] == "canary" and raw["weight"] == 5
    assert (two / store.CURRENT).read_text().strip() == "v1"  # what an old server reads
    assert not list(two.glob(".CANDIDATE.*"))  # written by one rename, no temporary left


def test_prune_keeps_the_candidate(tmp_path):
    _publish(tmp_path, "v0")
    _publish(tmp_path, "v1")
    rollout.set_candidate(tmp_path, "v0", rollout.CANARY, 10)
    for i in range(2, 6):
        _publish(tmp_path, f"v{i}")
        store.prune(tmp_path, keep=2)
    assert store.list_versions(tmp_path) == ["v0", "v5"]  # the oldest, but the candidate


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe{}",
        b'{"version": "v2", "mode": "canary", "weight": 1' + b"0" * 400 + b"}",
        b'{"version": "v2", "mode": "canary", "weight": 1' + b"0" * 5000 + b"}",
    ],
    ids=["not-utf8", "weight-beyond-float", "integer-beyond-json-limit"],
)
def test_any_damaged_file_is_an_artifact_error_and_prune_then_removes_nothing(two, raw):
    (two / rollout.CANDIDATE).write_bytes(raw)
    with pytest.raises(store.ArtifactError):
        rollout.read_candidate(two)
    assert store.prune(two, keep=1) == [] and store.list_versions(two) == ["v1", "v2"]


def test_rollback_after_a_promotion_cut_short_undoes_it(two):
    rollout.set_candidate(two, "v2", rollout.CANARY, 10)
    store.set_current(two, "v2")  # promote's first steps: recorded, CURRENT moved...
    rollout._record(two, "promote", rollout.read_candidate(two), previous="v1")  # ...then a crash
    assert "v1 is the current version again" in rollout.rollback(two)
    assert store.current_version(two) == "v1" and rollout.read_candidate(two) is None


def test_a_withdrawal_for_a_candidate_that_changed_meanwhile_is_refused(two):
    judged = rollout.set_candidate(two, "v2", rollout.CANARY, 10)
    newer = rollout.set_candidate(two, "v2", rollout.SHADOW)
    with pytest.raises(store.ArtifactError, match="changed"):
        rollout.withdraw(two, "auto-rollback", expected=judged)
    assert rollout.read_candidate(two) == newer


def test_a_version_the_guard_withdrew_is_known_until_set_again(two):
    assert rollout.last_withdrawal_by_guard(two, "v2") is None
    candidate = rollout.set_candidate(two, "v2", rollout.CANARY, 10)
    rollout.withdraw(two, rollout.AUTO_ROLLBACK, why="worse", expected=candidate)
    assert rollout.last_withdrawal_by_guard(two, "v2")["why"] == "worse"
    rollout.set_candidate(two, "v2", rollout.SHADOW)  # by hand, knowingly
    assert rollout.last_withdrawal_by_guard(two, "v2") is None


def test_the_chart_s_hook_does_not_bring_back_what_the_guard_withdrew(two, capsys):
    from fashion_classifier.cli import main

    hook = ["model", "canary", "v2", "--weight", "10", "--model-dir", str(two), "--unless-withdrawn"]
    assert main(hook) == 0 and rollout.read_candidate(two).version == "v2"
    rollout.withdraw(two, rollout.AUTO_ROLLBACK, why="worse")
    capsys.readouterr()
    assert main(hook) == 0  # the next helm upgrade
    assert "v2 was withdrawn by the guard" in capsys.readouterr().out
    assert rollout.read_candidate(two) is None
    assert main(hook[:-1]) == 0 and rollout.read_candidate(two).version == "v2"  # an operator's own move
