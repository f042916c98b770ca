"""One classification step shared by every API: run a batch, count it, log it.

Each API decodes its own input format into a float32 batch [N, 28, 28], calls
:meth:`Classifier.classify` (one LiteRT invoke for the whole batch) and encodes its own answer;
once the response body is built, :meth:`Classifier.log` hands the whole request to the prediction
log as one :class:`PredictionBatch` (queued, never waited on) and remembers the ids for feedback.
The batch holds the arrays as they are: labels, Python floats and the backend's encoding are made
in the log's writer thread, off the request's path.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fashion_classifier import metrics, timeuuid
from fashion_classifier.errors import ModelNotReady
from fashion_classifier.inference.arms import Choice, Serving
from fashion_classifier.inference.batch import ImageInfo
from fashion_classifier.inference.loader import LoadedModel
from fashion_classifier.inference.reloader import ModelHolder
from fashion_classifier.inference.shadow import ShadowRunner
from fashion_classifier.predlog.base import PredictionBatch, PredictionLog
from fashion_classifier.predlog.null_log import NullLog


class RecentPredictions:
    """The last predictions of this process (id -> version, class), so feedback that follows a
    prediction at once does not depend on the prediction log having written it yet.

    Two generations of plain dicts instead of a locked LRU: every request adds to it, and a dict
    store is atomic under the GIL, so no lock is needed; when the new generation is full it
    becomes the old one (the previous old one is dropped). It keeps the last ``size`` to
    ``2 * size`` predictions.

    Each generation maps a model version to ``{id as an int: class}``: an int key and a small-int
    value take less than half the memory of a ``UUID`` key with a ``(version, class)`` tuple, and
    the soak saw that difference as RSS growth.
    """

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._count = 0  # ids in the new generation
        self._new: dict[str, dict[int, int]] = {}
        self._old: dict[str, dict[int, int]] = {}

    def add(self, ids: Sequence[uuid.UUID], version: str, classes: Sequence[int]) -> None:
        generation = self._new
        by_id = generation.get(version)
        if by_id is None:
            by_id = generation[version] = {}
        by_id.update(zip([pid.int for pid in ids], classes, strict=True))
        self._count += len(ids)
        if self._count >= self._size:
            self._old, self._new, self._count = generation, {}, 0

    def get(self, prediction_id: uuid.UUID) -> tuple[str, int] | None:
        key = prediction_id.int
        for generation in (self._new, self._old):
            for version, by_id in tuple(generation.items()):  # a snapshot: add() may insert a version
                cls = by_id.get(key)
                if cls is not None:
                    return version, cls
        return None


@dataclass(slots=True)
class Outcome:
    model: LoadedModel
    arm: str  # which rollout arm answered (arms.CURRENT_ARM or CANDIDATE_ARM)
    probs: np.ndarray  # float32 [N, 10]
    classes: np.ndarray  # int64 [N]
    top3: np.ndarray  # int64 [N, 3], best first
    source: str
    infos: Sequence[ImageInfo] | None
    started: float
    _id_source: timeuuid.TimeIds
    _ids: list[uuid.UUID] | None = None
    shadow: LoadedModel | None = None  # a shadow candidate to run on the same images after the response
    pixels: np.ndarray | None = None  # kept only for the shadow

    @property
    def ids(self) -> list[uuid.UUID]:
        """Prediction ids, made when first needed (a response that shows none, with the log
        off, skips making them)."""
        if self._ids is None:
            self._ids = self._id_source.take(len(self.classes))
        return self._ids

    @property
    def low_confidence(self) -> list[bool]:
        """Per image: is its confidence below the model's calibrated threshold? Never, without one."""
        threshold = self.model.low_confidence_below
        if threshold is None:
            return [False] * len(self.classes)
        return (self.probs.max(axis=1) < threshold).tolist()

    @property
    def labels(self) -> list[str]:
        names = self.model.class_names
        return [names[k] for k in self.classes.tolist()]


class Answered(NamedTuple):
    """A request's outcome as its response left: what its rows record."""

    outcome: Outcome
    client: str | None  # the client address's salted hash
    created_us: int
    latency_ms: float


class Classifier:
    """The classification step of every protocol: predict with a rollout's arm and count it, log the
    outcome once its response is built, and find a prediction again for feedback."""

    def __init__(self, holder: ModelHolder, predlog: PredictionLog, client_salt: str = "") -> None:
        self.holder = holder
        self.predlog = predlog
        self.logging = not isinstance(predlog, NullLog)  # FC_PREDLOG=off: no records to build
        self.ids = timeuuid.TimeIds()
        self.recent = RecentPredictions()
        # Without a configured salt, hashes are stable within a process only.
        self._salt = (client_salt or secrets.token_hex(16)).encode()
        self._hash_cache: dict[str, str] = {}
        self.shadow = ShadowRunner(self._record)

    def serving(self) -> Serving:
        serving = self.holder.serving  # read once: a reload during the request does not affect it
        if serving is None:
            raise ModelNotReady("no model loaded yet; retry shortly")
        return serving

    def classify(
        self,
        pixels: np.ndarray,
        source: str,
        infos: Sequence[ImageInfo] | None,
        started: float,
        key: str | None = None,
        choice: Choice | None = None,
    ) -> Outcome:
        """Answer with the arm ``key`` is assigned to (:func:`rollout_key`), or with ``choice``."""
        choice = choice or self.serving().choose(key)
        model = choice.model
        began = time.perf_counter()
        try:
            probs = model.predictor.predict(pixels)
        except Exception:
            metrics.INFERENCE_ERRORS.labels(model.version).inc()
            raise
        metrics.inference_duration(model.version).observe(time.perf_counter() - began)
        top3, classes = ranked(probs)
        metrics.observe_predictions(classes, probs, model.class_names, source, model.version, choice.arm)
        outcome = Outcome(model, choice.arm, probs, classes, top3, source, infos, started, self.ids)
        if choice.shadow is not None:
            outcome.shadow, outcome.pixels = choice.shadow, pixels
        return outcome

    def client_hash(self, address: str | None) -> str | None:
        if not address:
            return None
        cached = self._hash_cache.get(address)
        if cached is None:
            if len(self._hash_cache) > 10_000:
                self._hash_cache.clear()
            cached = hashlib.blake2b(address.encode(), key=self._salt[:64], digest_size=8).hexdigest()
            self._hash_cache[address] = cached
        return cached

    def log(self, outcome: Outcome, client_address: str | None) -> None:
        """Once the response body is built: remember the ids for feedback now; record the rows now,
        or once a shadow predicted them."""
        if self.logging or outcome._ids is not None:  # ids went to the client: feedback may follow
            self.recent.add(outcome.ids, outcome.model.version, outcome.classes.tolist())
        if not self.logging and outcome.shadow is None:
            return
        # What the client saw, taken now: a shadow's rows are recorded later.
        answered = Answered(
            outcome,
            self.client_hash(client_address),
            time.time_ns() // 1000,
            (time.perf_counter() - outcome.started) * 1e3,
        )
        if outcome.shadow is None or not self.shadow.submit(answered, outcome.shadow, outcome.pixels):
            self._record(answered, None)

    def _record(self, answered: Answered, shadow_probs: np.ndarray | None) -> None:
        """Count a shadow's agreement, and hand the rows to the log (the shadow thread calls this too)."""
        outcome = answered.outcome
        if shadow_probs is not None:
            agreed = int((shadow_probs.argmax(axis=1) == outcome.classes).sum())
            version = outcome.shadow.version
            metrics.SHADOW_PREDICTIONS.labels(version, "true").inc(agreed)
            metrics.SHADOW_PREDICTIONS.labels(version, "false").inc(len(outcome.classes) - agreed)
        if not self.logging:
            return
        model = outcome.model
        self.predlog.record_batch(
            PredictionBatch(
                outcome.ids,
                answered.created_us,
                model.version,
                model.class_names,
                outcome.classes,
                outcome.top3,
                outcome.probs,
                outcome.source,
                outcome.infos,
                answered.latency_ms,
                answered.client,
                outcome.arm,
                None if shadow_probs is None else outcome.shadow.version,
                shadow_probs,
            )
        )

    def close(self) -> None:
        """Record what waits for a shadow (tests, shutdown)."""
        self.shadow.close()

    def find(self, prediction_id: uuid.UUID) -> tuple[str, int] | None:
        """(model version, predicted class) of a prediction, from this process or the log.

        Never waits: one look in this process's recent predictions, then at most one read of
        the log. A prediction made a moment ago by another worker (or pod) may still be queued
        for writing there; :meth:`may_be_unwritten` tells the caller it may ask again soon.
        """
        found = self.recent.get(prediction_id)
        if found is not None:
            return found
        rec = self.predlog.get(prediction_id)
        if rec is not None:
            return rec.model_version, rec.predicted_class
        return None

    @staticmethod
    def may_be_unwritten(prediction_id: uuid.UUID) -> bool:
        """True for an id made in the last UNWRITTEN_SECONDS: its row may not be in the log yet."""
        return timeuuid.is_recent(prediction_id, seconds=UNWRITTEN_SECONDS)


def ranked(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top 3 classes, best first, and its top class."""
    # Stable, so ties resolve to the lowest class index, as argmax does.
    top3 = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    return top3, top3[:, 0].copy()


# A row reaches the log within the writer's linger (0.2 s SQLite, 0.5 s Cassandra) plus a write,
# unless the log is down (then it waits in the spool and this is no promise).
UNWRITTEN_SECONDS = 10.0
