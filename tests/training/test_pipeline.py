"""Short real training runs on a subset: the artifact they publish, and seeded determinism."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fashion_classifier.artifacts import store


def _train(model_dir, data_dir, *extra):
    cmd = [sys.executable, "-m", "fashion_classifier.cli", "train", "--model-dir", str(model_dir),
           "--data-dir", str(data_dir), "--limit", "3000", "--epochs", "2", "--quiet", "--json", *extra]
    # later flags win in argparse, so extra can override --epochs
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    model_dir = tmp_path_factory.mktemp("store")
    return model_dir, _train(model_dir, data_dir)


def test_short_run_publishes_a_valid_artifact(trained):
    model_dir, meta = trained
    path = store.current_path(model_dir)
    assert path.name == meta["version"]
    assert store.verify(path, (store.TFLITE, store.KERAS)) == meta
    assert meta["train_examples"] == 3000 and meta["test_examples"] == 3000
    assert meta["epochs"] == 2 and meta["architecture"] == "mlp" and meta["seed"] == 42
    assert 0.5 < meta["test_accuracy"] <= 1
    confusion = np.array(meta["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 3000
    assert np.trace(confusion) / 3000 == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert set(meta["per_class"]) == set(meta["class_names"]) and len(meta["class_names"]) == 10
    assert meta["export"]["max_abs_diff_vs_keras"] <= 1e-5
    assert len(meta["history"]["loss"]) == 2
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_matches_keras_within_tolerance(trained, dataset):
    """Re-check the shipped claim independently: the TFLite export vs the saved Keras model."""
    import keras

    from fashion_classifier.artifacts.export import tflite_probabilities
    from fashion_classifier.training.evaluate import softmax

    model_dir, _ = trained
    path = store.current_path(model_dir)
    x = dataset.x_test[:2000].astype(np.float32) / 255.0
    keras_probs = softmax(keras.models.load_model(path / store.KERAS).predict(x, verbose=0))
    lite = tflite_probabilities(path / store.TFLITE, x)
    assert np.max(np.abs(lite - keras_probs)) <= 1e-5
    assert np.allclose(lite.sum(axis=1), 1, atol=1e-5)


def test_same_seed_same_result(trained, data_dir, tmp_path):
    _, first = trained
    second = _train(tmp_path, data_dir)
    assert second["version"] != first["version"]
    assert abs(second["test_accuracy"] - first["test_accuracy"]) <= 0.003
    assert second["history"]["loss"] == pytest.approx(first["history"]["loss"], rel=1e-3)


def test_cnn_architecture_trains_and_exports(data_dir, tmp_path):
    # Small batches give batch norm enough steps to settle its statistics on a 3,000-image subset.
    meta = _train(tmp_path, data_dir, "--arch", "cnn", "--epochs", "3", "--batch-size", "16")
    assert meta["architecture"] == "cnn"
    assert meta["export"]["max_abs_diff_vs_keras"] <= 1e-5
    assert meta["test_accuracy"] > 0.5
