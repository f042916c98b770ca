"""The package's entry points: a read tried again while the log connects."""

from __future__ import annotations

import time

import pytest

from fashion_classifier.predlog import PredictionLogUnavailable, when_available


def test_a_read_is_tried_again_until_the_log_is_available():
    attempts = []

    def read():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise PredictionLogUnavailable("not connected to Cassandra yet")
        return "rows"

    assert when_available(read, wait=10) == "rows" and len(attempts) == 3


def test_a_log_that_stays_unavailable_raises_after_the_wait():
    began = time.monotonic()
    with pytest.raises(PredictionLogUnavailable):
        when_available(lambda: (_ for _ in ()).throw(PredictionLogUnavailable("down")), wait=0.5)
    assert 0.5 <= time.monotonic() - began < 5


def test_other_errors_are_not_retried():
    calls = []

    def read():
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        when_available(read, wait=10)
    assert calls == [1]
