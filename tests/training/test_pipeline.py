"""Short real training runs on a subset: the artifact they publish, and seeded determinism."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fashion_classifier.artifacts import store


def _train(model_dir, data_dir, *extra):
    cmd = [
        sys.executable,
        "-m",
        "fashion_classifier.cli",
        "train",
        "--model-dir",
        str(model_dir),
        "--data-dir",
        str(data_dir),
        "--limit",
        "3000",
        "--arch",
        "mlp",
        "--epochs",
        "2",
        "--quiet",
        "--json",
        *extra,
    ]
    # later flags win in argparse, so extra can override --arch and --epochs
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
    assert meta["train_examples"] == 2700 and meta["test_examples"] == 3000  # 300 held out for calibration
    assert meta["epochs"] == 2 and meta["architecture"] == "mlp" and meta["seed"] == 42
    assert 0.5 < meta["test_accuracy"] <= 1
    confusion = np.array(meta["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 3000
    assert np.trace(confusion) / 3000 == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert set(meta["per_class"]) == set(meta["class_names"]) and len(meta["class_names"]) == 10
    assert meta["export"]["max_abs_diff_vs_keras"] <= 1e-5
    assert len(meta["history"]["loss"]) == 2
    for png in ("confusion_matrix.png", "training_curves.png", "reliability_diagram.png"):
        assert (path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_matches_keras_within_tolerance(trained, dataset):
    """Re-check the shipped claim independently: the TFLite export vs the saved Keras model."""
    from fashion_classifier.artifacts.export import tflite_probabilities
    from fashion_classifier.training.architectures import load
    from fashion_classifier.training.calibration import softmax

    model_dir, meta = trained
    path = store.current_path(model_dir)
    x = dataset.x_test[:2000].astype(np.float32) / 255.0
    logits = load(path / store.KERAS).predict(x, verbose=0)
    keras_probs = softmax(logits, meta["calibration"]["temperature"])
    lite = tflite_probabilities(path / store.TFLITE, x)
    assert np.max(np.abs(lite - keras_probs)) <= 1e-5  # metadata records the export's exact temperature
    assert np.allclose(lite.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_same_seed_same_result(trained, data_dir, tmp_path):
    _, first = trained
    second = _train(tmp_path, data_dir)
    assert second["version"] != first["version"]
    assert abs(second["test_accuracy"] - first["test_accuracy"]) <= 0.003
    assert second["history"]["loss"] == pytest.approx(first["history"]["loss"], rel=1e-3)


@pytest.mark.slow
def test_cnn_architecture_trains_and_exports(data_dir, tmp_path):
    # Small batches give batch norm enough steps to settle its statistics on a 3,000-image subset.
    meta = _train(tmp_path, data_dir, "--arch", "cnn", "--epochs", "3", "--batch-size", "16")
    assert meta["architecture"] == "cnn"
    assert meta["export"]["max_abs_diff_vs_keras"] <= 1e-5
    assert meta["test_accuracy"] > 0.5


def test_calibration_is_fitted_on_held_out_images_and_recorded(trained):
    _, meta = trained
    cal = meta["calibration"]
    assert cal["validation_examples"] == 300 and cal["bins"] == 15
    assert cal["temperature"] > 0 and cal["temperature"] == meta["export"]["output"]["temperature"]
    # Temperature scaling minimises the held-out NLL; on the test set it should not make ECE worse
    # by much, and on a 2-epoch MLP it improves it.
    assert cal["ece_after"] <= cal["ece_before"] + 0.01
    assert 0 < cal["low_confidence_below"] < 1 and 0 < cal["coverage_above"] <= 1
    assert meta["augmentation"] is None  # the tutorial's MLP trains on the images as published


def test_robustness_is_measured_on_the_export(trained):
    _, meta = trained
    robust = meta["robustness"]
    assert robust["examples"] == 3000
    assert set(robust["accuracy"]) == {
        "clean",
        "mirrored",
        "shifted",
        "scaled",
        "rotated",
        "contrast",
        "noise",
        "photo",
    }
    assert robust["accuracy"]["clean"] == pytest.approx(meta["test_accuracy"], abs=0.001)  # LiteRT vs Keras
    assert robust["accuracy"]["mirrored"] < robust["accuracy"]["clean"]  # the MLP has no invariance


@pytest.fixture(scope="module")
def compact(tmp_path_factory, data_dir):
    model_dir = tmp_path_factory.mktemp("compact")
    return model_dir, _train(model_dir, data_dir, "--arch", "compact", "--epochs", "2", "--batch-size", "16")


@pytest.mark.slow
def test_compact_trains_augmented_and_exports_the_net_alone(compact):
    model_dir, meta = compact
    assert meta["architecture"] == "compact" and meta["augmentation"]["shift_pixels"] == 3
    assert meta["export"]["max_abs_diff_vs_keras"] <= 1e-5
    # Two epochs on 2,700 images leave batch norm's statistics unsettled (test accuracy can be
    # near chance); that it learns is shown by its loss, its accuracy by the shipped artifact.
    assert meta["history"]["loss"][1] < meta["history"]["loss"][0]
    # The augmentation layers train but do not ship: the saved model is the net alone.
    from fashion_classifier.training.architectures import load

    saved = load(store.current_path(model_dir) / store.KERAS)
    assert saved.name == "compact" and not [layer for layer in saved.layers if "random" in layer.name]


@pytest.mark.slow
def test_compact_same_seed_same_result(compact, data_dir, tmp_path):
    """The augmentation is seeded: a second run sees the same batches and learns the same weights."""
    _, first = compact
    second = _train(tmp_path, data_dir, "--arch", "compact", "--epochs", "2", "--batch-size", "16")
    assert second["history"]["loss"] == pytest.approx(first["history"]["loss"], rel=1e-4)
    assert second["test_accuracy"] == pytest.approx(first["test_accuracy"], abs=0.003)


@pytest.mark.slow
def test_a_run_can_publish_a_rollout_candidate(data_dir, model_store):
    from fashion_classifier.artifacts import rollout

    current = store.current_version(model_store)
    meta = _train(model_store, data_dir, "--epochs", "1", "--publish-as", "canary", "--weight", "25")
    assert store.current_version(model_store) == current  # still answers 75 % of requests
    candidate = rollout.read_candidate(model_store)
    assert (candidate.version, candidate.mode, candidate.weight) == (meta["version"], "canary", 25.0)
    shadow = _train(model_store, data_dir, "--epochs", "1", "--publish-as", "shadow")
    assert rollout.read_candidate(model_store).version == shadow["version"]  # the newer one replaces it
    assert meta["version"] in store.list_versions(model_store)


@pytest.mark.slow
def test_a_first_version_is_current_whatever_it_was_published_as(data_dir, tmp_path):
    from fashion_classifier.artifacts import rollout

    meta = _train(tmp_path, data_dir, "--epochs", "1", "--publish-as", "canary")
    assert store.current_version(tmp_path) == meta["version"] and rollout.read_candidate(tmp_path) is None
