"""Assigning requests to a rollout's arms: deterministic per key, the configured share, shadows."""

from __future__ import annotations

import dataclasses

import pytest

from fashion_classifier.artifacts.rollout import CANARY, SHADOW
from fashion_classifier.inference.arms import CANDIDATE_ARM, CURRENT_ARM, Serving


@pytest.fixture(scope="module")
def models(loaded_model):
    return loaded_model, dataclasses.replace(loaded_model, version="candidate-v")


def test_without_a_candidate_the_current_version_answers(models):
    current, _ = models
    serving = Serving(current)
    choice = serving.choose("any")
    assert (choice.model, choice.arm, choice.shadow) == (current, CURRENT_ARM, None)
    assert serving.versions == [current.version]


def test_a_key_always_gets_the_same_arm_and_the_share_is_the_weight(models):
    serving = Serving(*models, CANARY, 10)
    arms = [serving.choose(f"request-{i}").arm for i in range(20_000)]
    assert arms == [serving.choose(f"request-{i}").arm for i in range(20_000)]  # a retry keeps its arm
    share = arms.count(CANDIDATE_ARM) / len(arms)
    assert 0.09 <= share <= 0.11
    unkeyed = [serving.choose(None).arm for _ in range(20_000)].count(CANDIDATE_ARM) / 20_000
    assert 0.09 <= unkeyed <= 0.11


def test_another_candidate_draws_other_keys(models):
    current, candidate = models
    first = Serving(current, candidate, CANARY, 50)
    second = Serving(current, dataclasses.replace(candidate, version="other-v"), CANARY, 50)
    keys = [f"client-{i}" for i in range(2000)]
    same = sum(first.choose(k).arm == second.choose(k).arm for k in keys)
    assert 800 < same < 1200  # independent draws agree about half the time


@pytest.mark.parametrize(("weight", "share"), [(0, 0.0), (100, 1.0)])
def test_the_ends_of_the_range_are_exact(models, weight, share):
    serving = Serving(*models, CANARY, weight)
    assert [serving.choose(str(i)).arm for i in range(1000)].count(CANDIDATE_ARM) == 1000 * share


def test_a_shadow_answers_nothing_and_sees_everything(models):
    current, candidate = models
    serving = Serving(current, candidate, SHADOW, 50)
    assert serving.weight == 0.0
    for key in ("a", "b", None):
        choice = serving.choose(key)
        assert (choice.model, choice.arm, choice.shadow) == (current, CURRENT_ARM, candidate)


def test_a_version_is_found_whichever_arm_serves_it(models):
    current, candidate = models
    serving = Serving(current, candidate, SHADOW)
    assert serving.versions == [current.version, candidate.version]
    assert serving.version(candidate.version).model is candidate
    assert serving.version(candidate.version).shadow is None  # asked for by name: it answers
    assert serving.version(current.version).arm == CURRENT_ARM
    assert serving.version(current.version).shadow is candidate  # named, it is still shadowed
    assert serving.version("nope") is None
