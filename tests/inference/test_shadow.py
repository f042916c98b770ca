"""The shadow runner: predictions off the response path, bounded, dropped and counted when full."""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import REGISTRY

from fashion_classifier.inference.shadow import ShadowRunner


def dropped(version):
    return REGISTRY.get_sample_value("fc_shadow_dropped_total", {"model_version": version}) or 0.0


class Gate:
    """A model whose predictions wait for the test to open the gate."""

    def __init__(self, model):
        self.version = model.version
        self._model = model
        self.opened = threading.Event()
        self.predictor = self

    def predict(self, pixels):
        self.opened.wait(10)
        return self._model.predictor.predict(pixels)


def test_results_arrive_in_order_and_close_finishes_the_queue(loaded_model):
    results = []
    runner = ShadowRunner(lambda item, probs: results.append((item, probs.shape)))
    pixels = np.zeros((3, 28, 28), np.float32)
    for i in range(5):
        assert runner.submit(i, loaded_model, pixels)
    runner.close()
    assert results == [(i, (3, 10)) for i in range(5)]


def test_a_full_queue_drops_and_counts_and_never_blocks(loaded_model):
    results = []
    gate = Gate(loaded_model)
    runner = ShadowRunner(lambda item, probs: results.append(item), max_pending=8)
    pixels = np.zeros((4, 28, 28), np.float32)
    before = dropped(gate.version)
    assert runner.submit("a", gate, pixels) and runner.submit("b", gate, pixels)
    assert not runner.submit("c", gate, pixels)  # 12 images > 8: dropped at once
    assert dropped(gate.version) == before + 4
    gate.opened.set()
    runner.close()
    assert results == ["a", "b"]


def test_a_failing_candidate_still_hands_back_the_item(loaded_model):
    class Broken:
        version = "broken"

        class predictor:  # noqa: N801 - stands in for a Predictor
            @staticmethod
            def predict(pixels):
                raise RuntimeError("boom")

    results = []
    runner = ShadowRunner(lambda item, probs: results.append((item, probs)))
    runner.submit("x", Broken, np.zeros((1, 28, 28), np.float32))
    runner.close()
    assert results == [("x", None)]


def test_a_failure_to_record_a_shadow_records_the_served_rows_alone_and_the_thread_lives_on(loaded_model):
    seen = []

    def done(item, probs):
        if probs is not None and item == "bad":
            raise RuntimeError("boom")
        seen.append((item, probs is None))

    runner = ShadowRunner(done)
    pixels = np.zeros((1, 28, 28), np.float32)
    for item in ("bad", "good"):
        runner.submit(item, loaded_model, pixels)
    runner.close()
    assert seen == [("bad", True), ("good", False)]


def test_close_records_what_the_thread_did_not_reach(loaded_model):
    results = []
    gate = Gate(loaded_model)
    runner = ShadowRunner(lambda item, probs: results.append((item, probs is None)))
    pixels = np.zeros((1, 28, 28), np.float32)
    for item in ("a", "b", "c"):
        runner.submit(item, gate, pixels)
    runner.close(timeout=0.2)  # "a" is stuck in the candidate
    assert results == [("b", True), ("c", True)]  # recorded without their shadow, not lost
    gate.opened.set()
