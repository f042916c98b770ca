"""Run the serving export (``model.tflite``) with the standalone LiteRT interpreter.

No TensorFlow here: a worker that imports this module stays at ~50 MB and starts in a quarter
of a second. One interpreter per model, one thread (each gunicorn worker owns a core). A whole
request goes through in one ``invoke``; the input tensor is resized only when the batch size
changes (a resize costs ~3 µs for this model, an invoke ~6 µs at batch 1).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28)
# Larger requests are run in chunks so the interpreter's buffers stay bounded: LiteRT keeps the
# arena of the largest batch it ran, about 0.4 MB per image for the compact net's activations
# (a 256-image invoke left a worker 30 MB larger; bench/results/model-cost-*). 64 images cost
# the MLP nothing measurable per image and bound the compact net's arena near 25 MB.
MAX_CHUNK = 64


class ModelLoadError(Exception):
    """The export cannot be loaded or does not behave like a Fashion-MNIST classifier."""


class Predictor:
    """float32 [N, 28, 28] in [0, 1] -> softmax probabilities float32 [N, 10]."""

    def __init__(self, tflite_path: Path, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(tflite_path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"LiteRT cannot load {tflite_path}: {exc}") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f"{tflite_path} has {len(inputs)} inputs and {len(outputs)} outputs, expected 1 and 1")
        shape = tuple(int(d) for d in inputs[0]["shape"])
        if shape[1:] != INPUT_SHAPE or inputs[0]["dtype"] != np.float32:
            raise ModelLoadError(
                f"{tflite_path} takes {inputs[0]['dtype'].__name__}{list(shape)}, expected float32 [N, 28, 28]"
            )
        self._input = inputs[0]["index"]
        self._output = outputs[0]["index"]
        self._batch = shape[0]
        # The interpreter is not re-entrant; an uncontended lock costs ~0.1 µs.
        self._lock = threading.Lock()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 3 or batch.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected a float32 batch [N, 28, 28], got {list(batch.shape)}")
        n = batch.shape[0]
        if n == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        if n > MAX_CHUNK:
            return np.concatenate([self.predict(batch[i : i + MAX_CHUNK]) for i in range(0, n, MAX_CHUNK)])
        with self._lock:
            if n != self._batch:
                self._interpreter.resize_tensor_input(self._input, (n, *INPUT_SHAPE), strict=False)
                self._interpreter.allocate_tensors()
                self._batch = n
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output)  # a copy: safe after the lock


def validate(predictor: Predictor) -> None:
    """Warm the interpreter with real inferences and check its outputs look like probabilities."""
    rng = np.random.default_rng(0)
    probe = np.concatenate([np.zeros((1, *INPUT_SHAPE), np.float32), rng.random((2, *INPUT_SHAPE), dtype=np.float32)])
    # Batch 1 last leaves the interpreter sized for the most common request.
    for batch in (probe, probe[:1]):
        try:
            probs = predictor.predict(batch)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"test inference failed: {exc}") from None
        if probs.shape != (len(batch), NUM_CLASSES):
            raise ModelLoadError(f"output shape {list(probs.shape)}, expected [{len(batch)}, {NUM_CLASSES}]")
        if not np.isfinite(probs).all() or probs.min() < 0.0:
            raise ModelLoadError("outputs are not probabilities (negative or not finite)")
        sums = probs.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-3):
            raise ModelLoadError(f"probabilities sum to {sums.tolist()}, not 1 (is the softmax missing?)")
