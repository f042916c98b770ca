"""Hold the models being served and swap in newly published versions without a restart.

Each process (each gunicorn worker, after the fork) runs one daemon thread that reads the
store's ``CURRENT`` and rollout ``CANDIDATE`` every ``reload_interval`` seconds. A new version is
verified, loaded, validated and warmed on that thread, then published in a new
:class:`~fashion_classifier.inference.arms.Serving` with a single attribute assignment, which is
atomic in CPython: a request reads :attr:`ModelHolder.serving` once and keeps that object to the
end, so an in-flight request never sees half of two rollouts. A version already loaded is
reused, so promoting a candidate loads nothing. A version that fails is refused (logged,
``fc_model_load_failures_total``) and what was serving keeps serving (a refused candidate:
the current version alone); it is not retried until the store names another version. The same
thread counts the store's recorded rollout moves (``fc_rollout_moves``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fashion_classifier import metrics
from fashion_classifier.artifacts import rollout, store
from fashion_classifier.inference.arms import CANDIDATE_ARM, CURRENT_ARM, Serving
from fashion_classifier.inference.loader import LoadedModel, load_version
from fashion_classifier.inference.predictor import ModelLoadError

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, model_dir: Path, reload_interval: float = 2.0) -> None:
        self.model_dir = Path(model_dir)
        self.reload_interval = reload_interval
        self.serving: Serving | None = None
        self.last_error: str | None = None
        self._refused: dict[str, str] = {}  # arm -> the last version refused for it, not retried
        self._moves_seen: tuple[int, int] | None = None  # ROLLOUTS.jsonl's (size, mtime) last counted
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        metrics.MODEL_READY.set(0)

    @property
    def model(self) -> LoadedModel | None:
        """The current version (what answers requests outside a canary's share)."""
        serving = self.serving
        return serving.current if serving is not None else None

    @property
    def ready(self) -> bool:
        return self.serving is not None

    def check(self) -> bool:
        """Load what the store names if it changed; True when a new rollout state was swapped in."""
        with self._check_lock:  # the watcher and an explicit call never load the same version twice
            # CANDIDATE before CURRENT: a promotion writes CURRENT first, so a check between its two
            # steps sees the candidate equal to CURRENT (no candidate), never the old pair without it.
            wanted, unreadable = self._wanted_candidate()
            self._count_moves()
            try:
                version = store.current_version(self.model_dir)
            except (OSError, store.ArtifactError) as exc:
                self._refuse(None, None, f"cannot read the current version in {self.model_dir}: {exc}")
                return False
            if version is None:
                return False
            serving = self.serving
            current = self._obtain(CURRENT_ARM, version, serving) or (serving.current if serving else None)
            if current is None:
                return False
            if unreadable:  # said after the current version's load, which clears the last error
                self._refuse(None, None, f"rollout candidate ignored: {unreadable}")
            if wanted is not None and wanted.version == current.version:
                wanted = None
            candidate = self._obtain(CANDIDATE_ARM, wanted.version, serving) if wanted else None
            new = Serving(current, candidate, wanted.mode if candidate else None, wanted.weight if candidate else 0.0)
            if serving is not None and (
                serving.current is new.current
                and serving.candidate is new.candidate
                and (serving.mode, serving.weight) == (new.mode, new.weight)
            ):
                return False
            self.serving = new  # the swap: one reference assignment
            self._announce(serving, self.serving)
            return True

    def _wanted_candidate(self) -> tuple[rollout.Candidate | None, str | None]:
        """The store's candidate, or None and why it cannot be read."""
        try:
            return rollout.read_candidate(self.model_dir), None
        except (OSError, store.ArtifactError) as exc:
            return None, str(exc)

    def _count_moves(self) -> None:
        """``fc_rollout_moves`` from the store's record of moves, read again only when it changed."""
        try:
            stat = (self.model_dir / rollout.HISTORY).stat()
            seen = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            seen = (0, 0)
        except OSError:
            return
        if seen == self._moves_seen:
            return
        try:
            counts = rollout.count_moves(self.model_dir)
        except Exception:  # noqa: BLE001 - a metric must never keep a version from loading
            log.exception("counting the rollout moves in %s failed", self.model_dir)
            self._moves_seen = seen  # not again until the file changes
            return
        for action, count in counts.items():
            metrics.ROLLOUT_MOVES.labels(action).set(count)
        self._moves_seen = seen

    def _obtain(self, arm: str, version: str, serving: Serving | None) -> LoadedModel | None:
        """The loaded ``version``: the one already serving, else newly loaded; None if refused."""
        if serving is not None:
            for loaded in (serving.current, serving.candidate):
                if loaded is not None and loaded.version == version:
                    return loaded
        if self._refused.get(arm) == version:
            return None
        try:
            loaded = load_version(store.version_path(self.model_dir, version))
        except (ModelLoadError, store.ArtifactError, OSError, ValueError, KeyError) as exc:
            self._refuse(arm, version, f"model version {version} refused: {exc}")
            return None
        if loaded.version != version:
            self._refuse(arm, version, f"model version {version} refused: its metadata says version {loaded.version}")
            return None
        self._refused.pop(arm, None)
        self.last_error = None
        metrics.MODEL_LOAD_SECONDS.observe(loaded.load_seconds)
        # A 0 from the start, so a version that never fails still has an error ratio to compare.
        metrics.INFERENCE_ERRORS.labels(loaded.version)
        return loaded

    def _announce(self, old: Serving | None, new: Serving) -> None:
        """Metrics and log lines for a swap."""
        loaded = new.current
        metrics.MODEL_INFO.labels(loaded.version, loaded.architecture).set(1)
        metrics.MODEL_READY.set(1)
        if old is None:
            log.info("model %s loaded (%.0f ms)", loaded.version, loaded.load_seconds * 1e3)
        elif old.current is not loaded:
            if (old.current.version, old.current.architecture) != (loaded.version, loaded.architecture):
                metrics.MODEL_INFO.labels(old.current.version, old.current.architecture).set(0)
            metrics.MODEL_RELOADS.inc()
            log.info("model %s replaced %s", loaded.version, old.current.version)
        before = _candidate_labels(old)
        after = _candidate_labels(new)
        if before != after:
            if before is not None:
                metrics.MODEL_CANDIDATE_INFO.labels(*before).set(0)
            if after is not None:
                metrics.MODEL_CANDIDATE_INFO.labels(*after).set(1)
                log.info("candidate %s serves as %s (weight %g %%)", new.candidate.version, new.mode, new.weight)
            else:
                log.info("no candidate: %s answers every request", loaded.version)

    def _refuse(self, arm: str | None, version: str | None, message: str) -> None:
        if arm is not None and version is not None:
            self._refused[arm] = version
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


def _candidate_labels(serving: Serving | None) -> tuple[str, str, str, str] | None:
    """``fc_model_candidate_info``'s labels: version, architecture, mode, weight."""
    if serving is None or serving.candidate is None:
        return None
    candidate = serving.candidate
    return candidate.version, candidate.architecture, str(serving.mode), f"{serving.weight:g}"
