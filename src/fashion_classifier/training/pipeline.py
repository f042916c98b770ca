"""train → evaluate → export → check → plots → metadata → atomic publish."""

from __future__ import annotations

import dataclasses
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
from fashion_classifier.artifacts import rollout, store
from fashion_classifier.config import CLASS_NAMES, DEFAULT_ARCHITECTURE
from fashion_classifier.data import Dataset


@dataclass(frozen=True)
class TrainOptions:
    architecture: str = DEFAULT_ARCHITECTURE
    epochs: int | None = None  # None: the architecture's recipe (training/architectures.py)
    batch_size: int | None = None
    seed: int = 42
    keep_versions: int = 5
    verbose: int = 1  # Keras progress bar (1), one line per epoch (2), silent (0)
    publish_as: str = "current"  # or a rollout's candidate: "canary" (answers `weight` %) or "shadow"
    weight: float = 10.0


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # python, numpy and TensorFlow generators
    # Deterministic kernels: two runs with one seed give the same weights on the same machine.
    tf.config.experimental.enable_op_determinism()


# Share of the training set held out for calibration (6,000 of the official 60,000 images).
VALIDATION_SHARE = 0.1


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in [0, 1], the tutorial's (and the export's) convention."""
    return images.astype(np.float32) / 255.0


def split_validation(dataset: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): a seeded share of the training set held out.

    The validation images choose the temperature and the low-confidence threshold, so the test
    set stays untouched by every choice made in training.
    """
    order = np.random.default_rng(seed).permutation(len(dataset.x_train))
    n_val = max(1, round(len(order) * VALIDATION_SHARE))
    train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    x, y = scale(dataset.x_train), dataset.y_train.astype(np.int64)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def train(
    dataset: Dataset,
    model_dir: Path,
    options: TrainOptions,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, calibrate, evaluate, export and publish one version; returns its metadata."""
    import tensorflow as tf

    from fashion_classifier.artifacts import export
    from fashion_classifier.training import architectures, augment, calibration, evaluate, report, robustness

    recipe = architectures.recipe(options.architecture)
    options = dataclasses.replace(
        options, epochs=options.epochs or recipe.epochs, batch_size=options.batch_size or recipe.batch_size
    )
    _seed_everything(options.seed)
    x_train, y_train, x_val, y_val = split_validation(dataset, options.seed)
    x_test, y_test = scale(dataset.x_test), dataset.y_test.astype(np.int64)
    steps_per_epoch = -(-len(x_train) // options.batch_size)
    trainer, model = architectures.build(options.architecture, steps_per_epoch * options.epochs, options.seed)
    log(
        f"training {options.architecture} ({model.count_params():,} parameters) on {len(x_train):,} images "
        f"for {options.epochs} epochs, seed {options.seed}; {len(x_val):,} held out for calibration"
    )
    started = time.perf_counter()
    history = trainer.fit(
        x_train,
        y_train,
        epochs=options.epochs,
        batch_size=options.batch_size,
        validation_data=(x_val, y_val),
        shuffle=True,
        verbose=options.verbose,
    )
    seconds = time.perf_counter() - started

    val_logits = model.predict(x_val, batch_size=1000, verbose=0)
    temperature = calibration.fit_temperature(val_logits, y_val)
    val_probs = calibration.softmax(val_logits, temperature)
    unsure = calibration.low_confidence_threshold(val_probs, y_val)
    test_logits = model.predict(x_test, batch_size=1000, verbose=0)
    raw_probs = calibration.softmax(test_logits)
    keras_probs = calibration.softmax(test_logits, temperature)
    scores = evaluate.metrics_from_probabilities(keras_probs, y_test)
    before = calibration.reliability_bins(raw_probs, y_test)
    after = calibration.reliability_bins(keras_probs, y_test)

    version = store.new_version_id(options.architecture)
    staged = store.staging_dir(model_dir)
    try:
        model.save(staged / store.KERAS)
        export.to_tflite(model, staged / store.TFLITE, temperature)
        diff = export.check_agreement(staged / store.TFLITE, x_test, keras_probs)
        robust = robustness.evaluate(
            lambda images: export.tflite_probabilities(staged / store.TFLITE, images), dataset.x_test, y_test
        )
        title = f"{options.architecture} {version} — test accuracy {scores['test_accuracy']:.4f}"
        report.plot_confusion(scores["confusion_matrix"], staged / "confusion_matrix.png", title)
        report.plot_history(history.history, staged / "training_curves.png", title)
        report.plot_reliability(before, after, staged / "reliability_diagram.png", f"{title} — test set")
        meta = {
            "version": version,
            "architecture": options.architecture,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **scores,
            "class_names": list(CLASS_NAMES),
            "parameters": int(model.count_params()),
            "epochs": options.epochs,
            "batch_size": options.batch_size,
            "optimizer": f"Adam, learning rate {recipe.learning_rate:g} cosine-decayed to 0",
            "augmentation": augment.describe() if recipe.augmented else None,
            "seed": options.seed,
            "training_seconds": round(seconds, 1),
            "train_examples": int(len(x_train)),
            "test_examples": int(len(x_test)),
            "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()},
            "calibration": {
                "method": "temperature scaling",
                "temperature": temperature,  # unrounded: the export divides by exactly this
                "validation_examples": int(len(x_val)),
                "bins": calibration.ECE_BINS,
                "ece_measured_on": "test set",
                "ece_before": round(calibration.ece_of_bins(before), 4),
                "ece_after": round(calibration.ece_of_bins(after), 4),
                "precision_target": calibration.PRECISION_TARGET,
                "low_confidence_below": round(unsure["threshold"], 4),
                "precision_above": round(unsure["precision_above"], 4),
                "coverage_above": round(unsure["coverage_above"], 4),
            },
            "robustness": robust,
            "dataset": {"source": dataset.source, "sha256": dataset.checksums},
            "tensorflow_version": tf.__version__,
            "fashion_classifier_version": __version__,
            "python_version": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "export": {
                "format": "tflite",
                "input": {"name": "pixels", "dtype": "float32", "shape": [-1, 28, 28], "range": [0.0, 1.0]},
                "output": {"name": "probabilities", "dtype": "float32", "shape": [-1, 10], "temperature": temperature},
                "max_abs_diff_vs_keras": diff,
                "tolerance": export.TOLERANCE,
            },
        }
        meta = store.write_metadata(staged, meta)
        as_current = options.publish_as == "current"
        store.publish(model_dir, staged, version, keep=options.keep_versions, make_current=as_current)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if not as_current and store.current_version(model_dir) != version:  # a first version is current anyway
        candidate = rollout.set_candidate(model_dir, version, options.publish_as, options.weight)
        log(f"published as the candidate: {candidate.describe()}")
    log(summary(meta))
    return meta


def summary(meta: dict[str, Any]) -> str:
    worst = min(meta["per_class"].items(), key=lambda kv: kv[1]["f1"])
    cal = meta["calibration"]
    robust = "  ".join(f"{name} {acc:.3f}" for name, acc in meta["robustness"]["accuracy"].items())
    return "\n".join(
        [
            f"published version {meta['version']}",
            f"  architecture     {meta['architecture']} ({meta['parameters']:,} parameters)",
            f"  test accuracy    {meta['test_accuracy']:.4f}   test loss {meta['test_loss']:.4f}",
            f"  weakest class    {worst[0]} (F1 {worst[1]['f1']:.3f})",
            f"  training time    {meta['training_seconds']:.1f} s for {meta['epochs']} epochs",
            f"  export check     max |Δp| vs Keras {meta['export']['max_abs_diff_vs_keras']:.2g}",
            f"  calibration      temperature {cal['temperature']:.3f}, ECE {cal['ece_before']:.4f} -> "
            f"{cal['ece_after']:.4f}; unsure below {cal['low_confidence_below']:.3f} "
            f"(precision {cal['precision_above']:.3f} on {cal['coverage_above']:.0%} above)",
            f"  robustness       {robust}",
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
