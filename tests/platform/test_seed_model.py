"""docker/fc-seed-model: how an empty shared volume gets the image's model (init container)."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from k8s_support import ROOT

from fashion_classifier.artifacts import store

SEED = ROOT / "docker" / "fc-seed-model"


def seed(source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEED, source, target], capture_output=True, text=True, timeout=60, check=True)


def test_seeds_an_empty_volume_with_a_verified_version(model_store, tmp_path):
    target = tmp_path / "volume"
    target.mkdir()
    out = seed(model_store, target)
    version = store.current_version(model_store)
    assert store.current_version(target) == version
    assert store.verify(store.current_path(target))["version"] == version
    for other in store.list_versions(model_store):
        assert store.verify(store.version_path(target, other))["version"] == other
    assert len(store.list_versions(target)) == 2 and "seeded" in out.stdout
    assert not [p for p in target.iterdir() if p.name.startswith(".")], "staging files left behind"


def test_leaves_a_store_with_a_current_version_alone(model_store, tmp_path):
    target = tmp_path / "volume"
    shutil.copytree(model_store, target)
    version = store.current_version(model_store)
    trained = "20990101T000000Z-cnn-abcd"
    shutil.copytree(store.version_path(target, version), store.version_path(target, trained))
    store.set_current(target, trained)
    out = seed(model_store, target)
    assert store.current_version(target) == trained
    assert "nothing to do" in out.stdout


def test_finishes_a_half_seeded_volume(model_store, tmp_path):
    """A pod killed after the version's rename but before CURRENT was linked."""
    target = tmp_path / "volume"
    version = store.current_version(model_store)
    shutil.copytree(store.version_path(model_store, version), store.version_path(target, version))
    seed(model_store, target)
    assert store.current_version(target) == version


def test_pods_seeding_at_once_agree(model_store, tmp_path):
    target = tmp_path / "volume"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: seed(model_store, target), range(4)))
    assert all(r.returncode == 0 for r in results)
    version = store.current_version(model_store)
    assert store.list_versions(target) == store.list_versions(model_store)  # every version: rollouts need them
    assert store.verify(store.current_path(target))["version"] == version
    assert not [p for p in target.iterdir() if p.name.startswith(".")]
