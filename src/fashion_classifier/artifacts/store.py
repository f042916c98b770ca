"""The versioned model store: one directory per version, switched by one atomic rename.

Layout of a store (``FC_MODEL_DIR``)::

    CURRENT                     text file holding the current version id
    CANDIDATE                   optional: a version rolled out beside it (``rollout``)
    versions/<version>/         one complete, immutable artifact per version
        model.keras             the trained Keras model (logits)
        model.tflite            serving export: float32 [N,28,28] in [0,1] -> softmax [N,10]
        metadata.json           version, metrics, checksums of the files above, ...
        confusion_matrix.png
        training_curves.png
    .staging-*/                 artifacts being written; never read by servers

A version directory is fully written and fsync'd under ``.staging-*`` and renamed into
``versions/`` (one rename); ``CURRENT`` is then replaced with ``os.replace`` (a second rename).
A reader that reads ``CURRENT`` therefore always finds a complete directory. This module
imports no TensorFlow: serving processes use it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fashion_classifier.checksums import sha256_file

VERSIONS = "versions"
CURRENT = "CURRENT"
METADATA = "metadata.json"
TFLITE = "model.tflite"
KERAS = "model.keras"
# Files whose checksums metadata.json records and serving verifies before loading.
CHECKED_FILES = (TFLITE, KERAS)
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ArtifactError(Exception):
    """A store or version is missing, incomplete or corrupt; the message says which and why."""


def new_version_id(architecture: str, now: datetime | None = None) -> str:
    """A sortable, unique version id such as ``20261124T181500Z-mlp-3f2a``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{architecture}-{uuid.uuid4().hex[:4]}"


def validate_version_id(version: str) -> str:
    if not _VERSION_RE.match(version) or version in (".", ".."):
        raise ArtifactError(f"invalid version id {version!r}")
    return version


def versions_dir(model_dir: Path) -> Path:
    return Path(model_dir) / VERSIONS


def version_path(model_dir: Path, version: str) -> Path:
    return versions_dir(model_dir) / validate_version_id(version)


def list_versions(model_dir: Path) -> list[str]:
    """Published versions, oldest first (ids sort by time)."""
    vdir = versions_dir(model_dir)
    if not vdir.is_dir():
        return []
    return sorted(p.name for p in vdir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name))


def current_version(model_dir: Path) -> str | None:
    """The current version id, or None when the store has none yet."""
    try:
        text = (Path(model_dir) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return validate_version_id(text) if text else None


def current_path(model_dir: Path) -> Path:
    version = current_version(model_dir)
    if version is None:
        raise ArtifactError(f"no model published in {model_dir} (no {CURRENT} file); run `fashion-classifier train`")
    return version_path(model_dir, version)


def load_metadata(path: Path) -> dict[str, Any]:
    try:
        with open(Path(path) / METADATA, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise ArtifactError(f"{path} has no {METADATA}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path / METADATA} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or "version" not in meta:
        raise ArtifactError(f"{path / METADATA} has no version field")
    return meta


def verify(path: Path, files: tuple[str, ...] = (TFLITE,)) -> dict[str, Any]:
    """Check that ``files`` exist and match the checksums in metadata.json; return the metadata."""
    meta = load_metadata(path)
    sums = meta.get("files", {})
    for name in files:
        file = Path(path) / name
        if not file.is_file():
            raise ArtifactError(f"{path} is missing {name}")
        expected = sums.get(name)
        if expected is None:
            raise ArtifactError(f"{path / METADATA} records no checksum for {name}")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(f"{file} checksum {actual[:12]}… does not match metadata {expected[:12]}…")
    return meta


def staging_dir(model_dir: Path) -> Path:
    """A fresh directory on the store's filesystem, so publishing it is a rename."""
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    # mkdtemp makes the directory private; serving runs as another user in containers.
    staged.chmod(0o755)
    return staged


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(path)


def write_metadata(staged: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Record checksums of the checked files present in ``staged`` and write metadata.json."""
    meta = dict(meta)
    meta["files"] = {name: sha256_file(staged / name) for name in CHECKED_FILES if (staged / name).is_file()}
    with open(staged / METADATA, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return meta


def replace_file(model_dir: Path, name: str, text: str) -> None:
    """Write a small file of the store in one rename: readers see the old text or the new, whole."""
    model_dir = Path(model_dir)
    tmp = model_dir / f".{name}.{uuid.uuid4().hex}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, model_dir / name)
    fsync_dir(model_dir)


def set_current(model_dir: Path, version: str) -> None:
    """Point CURRENT at an already published version, in one rename."""
    if not version_path(model_dir, version).is_dir():
        raise ArtifactError(f"version {version} is not published in {model_dir}")
    replace_file(model_dir, CURRENT, version + "\n")


def publish(model_dir: Path, staged: Path, version: str, keep: int = 5, make_current: bool = True) -> Path:
    """Move a fully written staging directory into the store and make it current.

    ``staged`` must hold metadata.json (see :func:`write_metadata`). Old versions beyond
    ``keep`` are removed afterwards; the current one and the new one are never removed. With
    ``make_current`` false, CURRENT stays (a rollout's candidate is published so), unless the
    store has none yet.
    """
    model_dir = Path(model_dir)
    target = version_path(model_dir, version)
    verify(staged, tuple(name for name in CHECKED_FILES if (staged / name).exists()))
    versions_dir(model_dir).mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise ArtifactError(f"version {version} already exists in {model_dir}")
    _fsync_tree(staged)
    os.rename(staged, target)
    fsync_dir(target.parent)
    if make_current or current_version(model_dir) is None:
        set_current(model_dir, version)
    prune(model_dir, keep, protect=(version,))
    return target


def prune(model_dir: Path, keep: int, protect: tuple[str, ...] = ()) -> list[str]:
    """Remove the oldest versions so that at most ``keep`` remain; never the current one, a
    rollout's candidate, nor those in ``protect``."""
    from fashion_classifier.artifacts import rollout  # it builds on this module

    kept = {current_version(model_dir), *protect}
    try:
        candidate = rollout.read_candidate(model_dir)
    except ArtifactError:
        return []  # which version it names is unknown: remove nothing
    if candidate is not None:
        kept.add(candidate.version)
    published = list_versions(model_dir)
    versions = [v for v in published if v not in kept]
    excess = len(published) - max(keep, 1)
    removed = []
    for version in versions[: max(excess, 0)]:
        shutil.rmtree(version_path(model_dir, version), ignore_errors=True)
        removed.append(version)
    return removed
