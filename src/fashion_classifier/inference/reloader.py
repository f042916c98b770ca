"""Hold the model being served and swap in newly published versions without a restart.

Each process (each gunicorn worker, after the fork) runs one daemon thread that reads the
store's ``CURRENT`` every ``reload_interval`` seconds. A new version is verified, loaded,
validated and warmed on that thread, then published with a single attribute assignment, which
is atomic in CPython: a request reads :attr:`ModelHolder.model` once and keeps that object to
the end, so an in-flight request never sees half of two models. A version that fails is
refused (logged, ``fc_model_load_failures_total``) and the previous one keeps serving; it is
not retried until ``CURRENT`` names another version.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fashion_classifier import metrics
from fashion_classifier.artifacts import store
from fashion_classifier.inference.loader import LoadedModel, load_version
from fashion_classifier.inference.predictor import ModelLoadError

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, model_dir: Path, reload_interval: float = 2.0) -> None:
        self.model_dir = Path(model_dir)
        self.reload_interval = reload_interval
        self.model: LoadedModel | None = None
        self.last_error: str | None = None
        self._refused: str | None = None  # last version that failed, not retried
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        metrics.MODEL_READY.set(0)

    @property
    def ready(self) -> bool:
        return self.model is not None

    def check(self) -> bool:
        """Load the store's current version if it is new; True when a new model was swapped in."""
        with self._check_lock:  # the watcher and an explicit call never load the same version twice
            try:
                version = store.current_version(self.model_dir)
            except (OSError, store.ArtifactError) as exc:
                self._refuse(None, f"cannot read the current version in {self.model_dir}: {exc}")
                return False
            if version is None:
                return False
            serving = self.model
            if (serving is not None and serving.version == version) or version == self._refused:
                return False
            return self._load(version, serving)

    def _load(self, version: str, serving: LoadedModel | None) -> bool:
        try:
            loaded = load_version(store.version_path(self.model_dir, version))
        except (ModelLoadError, store.ArtifactError, OSError, ValueError, KeyError) as exc:
            self._refuse(version, f"model version {version} refused: {exc}")
            return False
        if loaded.version != version:
            self._refuse(version, f"model version {version} refused: its metadata says version {loaded.version}")
            return False
        self.model = loaded  # the swap: one atomic reference assignment
        self.last_error = None
        self._refused = None
        metrics.MODEL_LOAD_SECONDS.observe(loaded.load_seconds)
        metrics.MODEL_INFO.labels(loaded.version, loaded.architecture).set(1)
        if serving is not None:
            if (serving.version, serving.architecture) != (loaded.version, loaded.architecture):
                metrics.MODEL_INFO.labels(serving.version, serving.architecture).set(0)
            metrics.MODEL_RELOADS.inc()
            log.info("model %s replaced %s (%.0f ms)", loaded.version, serving.version, loaded.load_seconds * 1e3)
        else:
            log.info("model %s loaded (%.0f ms)", loaded.version, loaded.load_seconds * 1e3)
        metrics.MODEL_READY.set(1)
        return True

    def _refuse(self, version: str | None, message: str) -> None:
        if version is not None:
            self._refused = version
            metrics.MODEL_LOAD_FAILURES.inc()
        if message != self.last_error:  # log a persistent problem once, not every poll
            log.error("%s%s", message, "; still serving " + self.model.version if self.model else "")
        self.last_error = message

    def start(self) -> None:
        """Start the watcher thread (call in the serving process, after any fork)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self.reload_interval <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="fc-model-reloader", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must survive anything and keep serving
                log.exception("model reload check failed")

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
