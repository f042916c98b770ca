import json
import threading
import time

import pytest

from fashion_classifier.artifacts import store


def _stage(model_dir, version, payload=b"tflite"):
    staged = store.staging_dir(model_dir)
    (staged / store.TFLITE).write_bytes(payload)
    store.write_metadata(staged, {"version": version})
    return staged


def test_default_store_is_complete_and_verified():
    from fashion_classifier.config import DEFAULT_MODEL_DIR

    path = store.current_path(DEFAULT_MODEL_DIR)
    meta = store.verify(path, (store.TFLITE, store.KERAS))
    assert meta["architecture"] == "compact" and meta["epochs"] == 24  # its recipe (training/architectures.py)
    assert meta["test_accuracy"] >= 0.885 and meta["robustness"]["accuracy"]["shifted"] >= 0.85
    for key in (
        "test_loss",
        "per_class",
        "confusion_matrix",
        "dataset",
        "tensorflow_version",
        "seed",
        "training_seconds",
        "parameters",
    ):
        assert key in meta
    assert meta["parameters"] == 93_962
    for png in ("confusion_matrix.png", "training_curves.png", "reliability_diagram.png"):
        assert (path / png).stat().st_size > 1000


def test_publish_switches_current_and_prunes(tmp_path):
    versions = [f"v{i:02d}" for i in range(7)]
    for v in versions:
        store.publish(tmp_path, _stage(tmp_path, v, v.encode()), v, keep=3)
        assert store.current_version(tmp_path) == v
    assert store.list_versions(tmp_path) == versions[-3:]
    assert not list(tmp_path.glob(".staging-*"))


def test_verify_detects_tampering(tmp_path):
    store.publish(tmp_path, _stage(tmp_path, "v1"), "v1")
    path = store.current_path(tmp_path)
    (path / store.TFLITE).write_bytes(b"evil")
    with pytest.raises(store.ArtifactError, match="checksum"):
        store.verify(path)
    (path / store.TFLITE).unlink()
    with pytest.raises(store.ArtifactError, match="missing model.tflite"):
        store.verify(path)


def test_empty_store_and_bad_ids(tmp_path):
    assert store.current_version(tmp_path) is None
    with pytest.raises(store.ArtifactError, match="no model published"):
        store.current_path(tmp_path)
    for bad in ("../etc", "a/b", "", ".."):
        with pytest.raises(store.ArtifactError):
            store.validate_version_id(bad)
    (tmp_path / store.CURRENT).write_text("../../etc\n")
    with pytest.raises(store.ArtifactError):
        store.current_version(tmp_path)


def test_republishing_a_version_is_refused(tmp_path):
    store.publish(tmp_path, _stage(tmp_path, "v1"), "v1")
    with pytest.raises(store.ArtifactError, match="already exists"):
        store.publish(tmp_path, _stage(tmp_path, "v1"), "v1")
    assert store.current_version(tmp_path) == "v1"


def test_concurrent_reader_never_sees_a_partial_version(tmp_path):
    """A reader polling like a serving process must always find a complete, verified version."""
    payload = b"x" * 300_000  # big enough that a non-atomic copy would be caught mid-write
    store.publish(tmp_path, _stage(tmp_path, "v000", payload), "v000", keep=3)
    stop = threading.Event()
    seen, errors = set(), []

    def reader():
        while not stop.is_set():
            try:
                version = store.current_version(tmp_path)
                meta = store.verify(store.version_path(tmp_path, version))
                assert meta["version"] == version
                seen.add(version)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 40):
            v = f"v{i:03d}"
            store.publish(tmp_path, _stage(tmp_path, v, payload + v.encode()), v, keep=3)
            time.sleep(0.002)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(seen) > 5


def test_metadata_json_errors(tmp_path):
    (tmp_path / "v").mkdir()
    with pytest.raises(store.ArtifactError, match="has no metadata.json"):
        store.load_metadata(tmp_path / "v")
    (tmp_path / "v" / store.METADATA).write_text("{not json")
    with pytest.raises(store.ArtifactError, match="not valid JSON"):
        store.load_metadata(tmp_path / "v")
    (tmp_path / "v" / store.METADATA).write_text(json.dumps([1]))
    with pytest.raises(store.ArtifactError, match="no version"):
        store.load_metadata(tmp_path / "v")
