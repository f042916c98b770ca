"""Export a trained Keras model to the serving format (TFLite with softmax) and check it.

The export takes float32 [N, 28, 28] pixels in [0, 1] and returns softmax probabilities of the
logits divided by the calibration temperature, so a serving process needs nothing but the LiteRT
interpreter. It is checked against Keras on the whole test set: probabilities must agree within
``TOLERANCE``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOLERANCE = 1e-5


class ExportError(Exception):
    """The export failed or disagrees with the Keras model."""


def to_tflite(model, path: Path, temperature: float = 1.0) -> None:  # model: keras.Model (TF imported lazily)
    """Write ``softmax(model(pixels) / temperature)`` as a TFLite file (temperature: calibration)."""
    import keras
    import tensorflow as tf

    # Converting a Keras model (not a tf.function capturing it) makes the converter freeze the
    # weights into constants; a captured Keras 3 model becomes READ_VARIABLE ops that LiteRT
    # cannot run.
    serving = keras.Sequential(
        [
            keras.Input(shape=(28, 28), name="pixels"),
            model,
            keras.layers.Rescaling(1.0 / temperature),
            keras.layers.Softmax(),
        ]
    )
    Path(path).write_bytes(tf.lite.TFLiteConverter.from_keras_model(serving).convert())


def tflite_probabilities(path: Path, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Run the export with the LiteRT runtime that serving uses."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    results = []
    for start in range(0, len(images), batch):
        chunk = np.ascontiguousarray(images[start : start + batch], dtype=np.float32)
        interpreter.resize_tensor_input(inp, chunk.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp, chunk)
        interpreter.invoke()
        results.append(interpreter.get_tensor(out).copy())
    return np.concatenate(results)


def check_agreement(path: Path, images: np.ndarray, keras_probs: np.ndarray) -> float:
    """Max absolute probability difference between export and Keras; raises above TOLERANCE."""
    lite = tflite_probabilities(path, images)
    if lite.shape != keras_probs.shape:
        raise ExportError(f"export returns shape {lite.shape}, Keras {keras_probs.shape}")
    diff = float(np.max(np.abs(lite - keras_probs))) if len(lite) else 0.0
    if not diff <= TOLERANCE:
        raise ExportError(f"export disagrees with Keras: max |Δp| = {diff:.3g} > {TOLERANCE}")
    return diff
