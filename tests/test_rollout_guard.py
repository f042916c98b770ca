"""The rollout guard's verdicts: withdrawn only when measurably worse, never on too little evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from inference.store_copies import other_version
from predlog.conftest import make_record

from fashion_classifier.artifacts import rollout, store
from fashion_classifier.predlog.arms_report import compare
from fashion_classifier.predlog.base import Page
from fashion_classifier.rollout_guard import Rules, accuracy_gap, guard_once, judge

NOW = datetime.now(UTC)
CANARY = rollout.Candidate("v2", rollout.CANARY, 50.0, NOW.isoformat())
SHADOW = rollout.Candidate("v2", rollout.SHADOW, 0.0, NOW.isoformat())


def answers(version, arm, n, right, **changes):
    """n answers with feedback by one version, ``right`` of them correct."""
    return [
        make_record(
            3,
            model_version=version,
            arm=arm,
            predicted_class=3,
            true_label=3 if i < right else 5,
            created_at=NOW,
            **changes,
        )
        for i in range(n)
    ]


def report_of(rows):
    return compare(rows, NOW - timedelta(hours=1), NOW + timedelta(seconds=1), max_rows=100_000)


def test_the_gap_and_its_interval():
    gap, low, high = accuracy_gap((45, 50), (90, 100))
    assert gap == pytest.approx(0.0) and low < 0 < high
    gap, low, high = accuracy_gap((5, 50), (90, 100))
    assert gap == pytest.approx(-0.8) and high < -0.65


@pytest.mark.parametrize(
    ("candidate_right", "n", "withdraw", "why"),
    [
        (5, 40, True, "below -0.05"),  # a constant-output model: 12 % against 90 %
        (35, 40, False, "not worse"),  # 87.5 % against 90 %: within the margin
        (0, 20, False, "too little feedback"),
        (32, 40, False, "not worse"),  # 80 % against 90 %, but 40 answers cannot tell it from 5 points
        (320, 400, True, "below -0.05"),  # the same 80 % on 400 answers can
    ],
)
def test_a_canary_is_withdrawn_only_when_measurably_worse(candidate_right, n, withdraw, why):
    rows = answers("v1", "current", 1000, 900) + answers("v2", "candidate", n, candidate_right)
    verdict = judge(report_of(rows), CANARY, "v1", Rules())
    assert verdict.withdraw is withdraw and why in verdict.why
    assert verdict.candidate_feedback == n and verdict.current_feedback == 1000


def test_a_shadow_is_judged_on_the_same_answers():
    # The served class is right on 36 of 40; the shadow's on 4.
    rows = [
        make_record(
            3,
            model_version="v1",
            arm="current",
            predicted_class=3,
            true_label=3 if i < 36 else 5,
            shadow_version="v2",
            shadow_class=3 if i < 4 else 7,
            shadow_confidence=0.9,
            created_at=NOW,
        )
        for i in range(40)
    ]
    verdict = judge(report_of(rows), SHADOW, "v1", Rules())
    assert verdict.withdraw and verdict.candidate_accuracy == 0.1 and verdict.current_accuracy == 0.9
    assert not judge(report_of(rows), SHADOW, "v1", Rules(min_feedback=41)).withdraw


def test_failing_inferences_withdraw_a_candidate_without_feedback():
    rows = answers("v1", "current", 10, 9)
    inferences = {"v1": (10_000.0, 1.0), "v2": (180.0, 20.0)}
    verdict = judge(report_of(rows), CANARY, "v1", Rules(), inferences)
    assert verdict.withdraw and "10.0% of its inferences failed" in verdict.why
    assert not judge(report_of(rows), CANARY, "v1", Rules(), {"v1": (10_000.0, 1.0), "v2": (50.0, 10.0)}).withdraw


class EmptyLog:
    """A prediction log without rows (the guard reads it a day at a time)."""

    def list_day(self, day, limit, token=None):
        return Page([], None)


def test_the_guard_judges_failures_over_the_window_since_the_candidate_was_set(model_store):
    candidate = rollout.set_candidate(model_store, other_version(model_store), rollout.CANARY, 10)
    current = store.current_version(model_store)
    windows = []

    def failing(seconds):
        windows.append(seconds)
        return {current: (10_000.0, 0.0), candidate.version: (100.0, 100.0)}

    verdict = guard_once(model_store, EmptyLog(), Rules(), failing)
    assert verdict.withdraw and "50.0% of its inferences failed" in verdict.why
    assert 0 <= windows[0] < 60  # since the candidate was set, not the whole hour
    assert rollout.read_candidate(model_store) is None
    assert rollout.history(model_store)[-1]["action"] == rollout.AUTO_ROLLBACK


@pytest.mark.parametrize(
    "source, said",
    [
        (lambda seconds: (_ for _ in ()).throw(OSError("connection refused")), "connection refused"),
        (lambda seconds: {}, "no inference counts for the current version"),
    ],
)
def test_without_usable_inference_counts_accuracy_is_still_judged(model_store, source, said):
    candidate = rollout.set_candidate(model_store, other_version(model_store), rollout.CANARY, 10)
    verdict = guard_once(model_store, EmptyLog(), Rules(), source)
    assert not verdict.withdraw and verdict.why.startswith("too little feedback yet")
    assert f"failed inferences not judged: {said}" in verdict.why
    assert rollout.read_candidate(model_store) == candidate
