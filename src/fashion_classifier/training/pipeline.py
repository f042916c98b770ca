"""train → evaluate → export → check → plots → metadata → atomic publish."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fashion_classifier import __version__
from fashion_classifier.artifacts import store
from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.data import Dataset


@dataclass(frozen=True)
class TrainOptions:
    architecture: str = "mlp"
    epochs: int = 15
    batch_size: int = 32
    seed: int = 42
    keep_versions: int = 5
    verbose: int = 1  # Keras progress bar (1), one line per epoch (2), silent (0)


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # python, numpy and TensorFlow generators
    # Deterministic kernels: two runs with one seed give the same weights on the same machine.
    tf.config.experimental.enable_op_determinism()


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in [0, 1], the tutorial's (and the export's) convention."""
    return images.astype(np.float32) / 255.0


def train(
    dataset: Dataset,
    model_dir: Path,
    options: TrainOptions,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, evaluate, export and publish one version; returns its metadata."""
    import tensorflow as tf

    from fashion_classifier.artifacts import export
    from fashion_classifier.training import architectures, evaluate, report

    _seed_everything(options.seed)
    x_train, x_test = scale(dataset.x_train), scale(dataset.x_test)
    y_train, y_test = dataset.y_train.astype(np.int64), dataset.y_test.astype(np.int64)
    steps_per_epoch = -(-len(x_train) // options.batch_size)
    model = architectures.build(options.architecture, total_steps=steps_per_epoch * options.epochs)
    log(
        f"training {options.architecture} ({model.count_params():,} parameters) on {len(x_train):,} images "
        f"for {options.epochs} epochs, seed {options.seed}"
    )
    started = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        epochs=options.epochs,
        batch_size=options.batch_size,
        validation_data=(x_test, y_test),  # curves only: nothing is selected on it
        shuffle=True,
        verbose=options.verbose,
    )
    seconds = time.perf_counter() - started

    keras_probs = evaluate.softmax(model.predict(x_test, batch_size=1000, verbose=0))
    scores = evaluate.metrics_from_probabilities(keras_probs, y_test)

    version = store.new_version_id(options.architecture)
    staged = store.staging_dir(model_dir)
    try:
        model.save(staged / store.KERAS)
        export.to_tflite(model, staged / store.TFLITE)
        diff = export.check_agreement(staged / store.TFLITE, x_test, keras_probs)
        title = f"{options.architecture} {version} — test accuracy {scores['test_accuracy']:.4f}"
        report.plot_confusion(scores["confusion_matrix"], staged / "confusion_matrix.png", title)
        report.plot_history(history.history, staged / "training_curves.png", title)
        meta = {
            "version": version,
            "architecture": options.architecture,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **scores,
            "class_names": list(CLASS_NAMES),
            "parameters": int(model.count_params()),
            "epochs": options.epochs,
            "batch_size": options.batch_size,
            "optimizer": "Adam, learning rate 1e-3 cosine-decayed to 0",
            "seed": options.seed,
            "training_seconds": round(seconds, 1),
            "train_examples": int(len(x_train)),
            "test_examples": int(len(x_test)),
            "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()},
            "dataset": {"source": dataset.source, "sha256": dataset.checksums},
            "tensorflow_version": tf.__version__,
            "fashion_classifier_version": __version__,
            "python_version": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "export": {
                "format": "tflite",
                "input": {"name": "pixels", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]},
                "output": {"name": "probabilities", "dtype": "float32", "shape": [-1, 10]},
                "max_abs_diff_vs_keras": diff,
                "tolerance": export.TOLERANCE,
            },
        }
        meta = store.write_metadata(staged, meta)
        store.publish(model_dir, staged, version, keep=options.keep_versions)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    log(summary(meta))
    return meta


def summary(meta: dict[str, Any]) -> str:
    worst = min(meta["per_class"].items(), key=lambda kv: kv[1]["f1"])
    return "\n".join(
        [
            f"published version {meta['version']}",
            f"  architecture     {meta['architecture']} ({meta['parameters']:,} parameters)",
            f"  test accuracy    {meta['test_accuracy']:.4f}   test loss {meta['test_loss']:.4f}",
            f"  weakest class    {worst[0]} (F1 {worst[1]['f1']:.3f})",
            f"  training time    {meta['training_seconds']:.1f} s for {meta['epochs']} epochs",
            f"  export check     max |Δp| vs Keras {meta['export']['max_abs_diff_vs_keras']:.2g}",
        ]
    )


def evaluate_version(dataset: Dataset, version_dir: Path) -> dict[str, Any]:
    """Re-evaluate a published version's serving export on the test set (no TensorFlow needed)."""
    from fashion_classifier.artifacts import export
    from fashion_classifier.training.evaluate import metrics_from_probabilities

    store.verify(version_dir)
    probs = export.tflite_probabilities(version_dir / store.TFLITE, scale(dataset.x_test))
    return metrics_from_probabilities(probs, dataset.y_test)


def dump(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=2, sort_keys=True)
