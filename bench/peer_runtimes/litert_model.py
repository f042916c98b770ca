"""The peers' model: the same LiteRT export (``model.tflite``) that our server runs, loaded the way
a peer's user would write it (no code from ``fashion_classifier``, which the peer venvs lack).

float32 [N, 28, 28] in [0, 1] -> softmax float32 [N, 10]. UINT8 gray levels are scaled by 1/255
first, like our server does. One interpreter per process, one thread (the peers' workers each own
a core, as ours do), resized only when the batch size changes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def current_tflite(model_dir: str | os.PathLike[str]) -> Path:
    """``model.tflite`` of the store's current version (``<store>/CURRENT`` names it)."""
    store = Path(model_dir)
    version = (store / "CURRENT").read_text(encoding="utf-8").strip()
    return store / "versions" / version / "model.tflite"


class LiteRTClassifier:
    def __init__(self, tflite_path: str | os.PathLike[str]) -> None:
        self._interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = int(self._interpreter.get_input_details()[0]["shape"][0])
        # Async servers may call predict from several threads; the interpreter is not re-entrant.
        self._lock = threading.Lock()
        self.predict(np.zeros((1, 28, 28), np.float32))  # warm up, as our server does on load

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        x = np.asarray(pixels)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
        x = np.ascontiguousarray(x.reshape(-1, 28, 28))
        with self._lock:
            if x.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input, x.shape, strict=False)
                self._interpreter.allocate_tensors()
                self._batch = x.shape[0]
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output)
