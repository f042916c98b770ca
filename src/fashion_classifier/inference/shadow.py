"""Run a shadow candidate on served images, off the response path.

In shadow mode the current version answers every request; its images are then handed to one
background thread per process, which runs the candidate on them and passes both results on
(to the prediction log and the agreement metrics). The hand-off is bounded by images: when the
candidate falls behind, further images are not queued, their shadow prediction is dropped and
counted (``fc_shadow_dropped_total``), and the served predictions are recorded without it.
Nothing a client waits for ever waits for the candidate.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fashion_classifier import metrics
from fashion_classifier.inference.loader import LoadedModel

log = logging.getLogger(__name__)

# Images waiting for the candidate, at most: ~3 MB of pixels.
MAX_PENDING_IMAGES = 1024

Done = Callable[[Any, np.ndarray | None], None]  # (the item submitted, the candidate's probabilities or None)


class ShadowRunner:
    def __init__(self, done: Done, max_pending: int = MAX_PENDING_IMAGES) -> None:
        self._done = done
        self._max_pending = max_pending
        self._pending = 0  # images queued or being predicted
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Any, LoadedModel, np.ndarray] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, item: Any, model: LoadedModel, pixels: np.ndarray) -> bool:
        """Queue ``model``'s prediction of ``pixels``; False (counted as dropped) when it is full."""
        n = len(pixels)
        with self._lock:
            if self._pending + n > self._max_pending:
                metrics.SHADOW_DROPPED.labels(model.version).inc(n)
                return False
            self._pending += n
            if self._thread is None or not self._thread.is_alive():  # first use (after gunicorn's fork)
                self._thread = threading.Thread(target=self._run, name="fc-shadow", daemon=True)
                self._thread.start()
        self._queue.put((item, model, pixels))
        return True

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            item, model, pixels = job
            began = time.perf_counter()
            try:
                probs = model.predictor.predict(pixels)
            except Exception:  # noqa: BLE001 - a broken candidate must not lose the served rows
                log.exception("shadow candidate %s failed", model.version)
                metrics.INFERENCE_ERRORS.labels(model.version).inc()
                probs = None
            else:
                metrics.inference_duration(model.version).observe(time.perf_counter() - began)
            with self._lock:
                self._pending -= len(pixels)
            self._hand_back(item, probs)

    def _hand_back(self, item: Any, probs: np.ndarray | None) -> None:
        try:
            self._done(item, probs)
        except Exception:  # noqa: BLE001 - the thread must live on, and the served rows be recorded
            log.exception("recording a shadow prediction failed; recording the served one alone")
            if probs is not None:
                with contextlib.suppress(Exception):
                    self._done(item, None)

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued (the served rows in it must still be recorded) and stop. What the
        thread has not reached by ``timeout`` is recorded here, without its shadow prediction."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._hand_back(job[0], None)
