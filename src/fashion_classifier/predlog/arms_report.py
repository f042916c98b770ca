"""Compare a rollout's arms over a time window, from the prediction log.

Per model version and arm: predictions, live accuracy from feedback with its 95 % Wilson
interval, latency p50/p99. Per shadow: how often it agreed with the served class, and its own
accuracy on the same feedback. Reading stops at ``max_rows`` (newest first): a report's cost is
bounded whatever the traffic, and says when it was cut.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from fashion_classifier.predlog.base import PredictionLog, PredictionLogUnavailable, PredictionRecord

Z95 = 1.959964


def wilson(correct: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None without observations."""
    if total <= 0:
        return None
    p = correct / total
    scale = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / scale
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


class _Scored:
    """Live accuracy from ``correct`` answers among ``feedback``."""

    correct: int
    feedback: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.feedback if self.feedback else None

    @property
    def accuracy_interval(self) -> tuple[float, float] | None:
        return wilson(self.correct, self.feedback)


@dataclass
class ArmStats(_Scored):
    model_version: str
    arm: str | None  # None: rows logged before rollouts
    predictions: int = 0
    feedback: int = 0
    correct: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    _latencies: list[float] = field(default_factory=list, repr=False)


@dataclass
class ShadowStats(_Scored):
    model_version: str  # the shadow candidate
    served_by: str  # the version that answered
    compared: int = 0
    agreed: int = 0
    feedback: int = 0
    correct: int = 0  # the shadow's class was the true label
    served_correct: int = 0  # the served class was, on the same answers

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


@dataclass
class Report:
    start: datetime
    end: datetime
    arms: list[ArmStats]
    shadows: list[ShadowStats]
    rows: int
    truncated: bool  # max_rows was reached before the window's start


def compare(records: Iterable[PredictionRecord], start: datetime, end: datetime, max_rows: int) -> Report:
    """The report of the records in [start, end) (any order; the first ``max_rows`` count)."""
    arms: dict[tuple[str, str | None], ArmStats] = {}
    shadows: dict[tuple[str, str], ShadowStats] = {}
    rows, truncated = 0, False
    for rec in records:
        if not start <= rec.created_at < end:
            continue
        if rows >= max_rows:
            truncated = True
            break
        rows += 1
        stats = arms.get((rec.model_version, rec.arm))
        if stats is None:
            stats = arms[(rec.model_version, rec.arm)] = ArmStats(rec.model_version, rec.arm)
        stats.predictions += 1
        stats._latencies.append(rec.latency_ms)
        if rec.true_label is not None:
            stats.feedback += 1
            stats.correct += rec.true_label == rec.predicted_class
        if rec.shadow_version is not None and rec.shadow_class is not None:
            shadow = shadows.get((rec.shadow_version, rec.model_version))
            if shadow is None:
                shadow = shadows[(rec.shadow_version, rec.model_version)] = ShadowStats(
                    rec.shadow_version, rec.model_version
                )
            shadow.compared += 1
            shadow.agreed += rec.shadow_class == rec.predicted_class
            if rec.true_label is not None:
                shadow.feedback += 1
                shadow.correct += rec.shadow_class == rec.true_label
                shadow.served_correct += rec.predicted_class == rec.true_label
    for stats in arms.values():
        if stats._latencies:
            stats.latency_p50_ms, stats.latency_p99_ms = (float(v) for v in np.percentile(stats._latencies, [50, 99]))
        stats._latencies = []
    ordered = sorted(arms.values(), key=lambda s: (s.arm != "current", s.arm or "", s.model_version))
    return Report(start, end, ordered, list(shadows.values()), rows, truncated)


def window(log: PredictionLog, start: datetime, end: datetime, page_size: int = 1000) -> Iterator[PredictionRecord]:
    """The log's records from ``end`` back to ``start``, newest first, day by day."""
    day = end.date()
    while day >= start.date():
        token = None
        while True:
            page = log.list_day(day, page_size, token)
            yield from page.rows
            if page.page_state is None or (page.rows and page.rows[-1].created_at < start):
                break
            token = page.page_state
        day -= timedelta(days=1)


class RecentReport:
    """The report of the last ``seconds``, read at most once per ``ttl`` seconds (for a page: its
    cost stays one bounded read per worker and ``ttl``, whatever the requests). A failed read is
    remembered for ``ttl`` too, and a request that finds another one reading is given the last
    result instead of waiting for it."""

    def __init__(self, log: PredictionLog, seconds: float = 3600.0, max_rows: int = 5000, ttl: float = 30.0) -> None:
        self._log = log
        self._seconds, self._max_rows, self._ttl = seconds, max_rows, ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, Report | PredictionLogUnavailable] | None = None

    def get(self) -> Report:
        """Raises PredictionLogUnavailable when the log cannot be read."""
        cached = self._cached
        if cached is None or time.monotonic() - cached[0] >= self._ttl:
            if self._lock.acquire(blocking=False):
                try:
                    cached = self._cached = (time.monotonic(), self._read())
                finally:
                    self._lock.release()
            elif cached is None:
                raise PredictionLogUnavailable("the report is being read; reload in a moment")
        result = cached[1]
        if isinstance(result, PredictionLogUnavailable):
            raise result
        return result

    def _read(self) -> Report | PredictionLogUnavailable:
        end = datetime.now(UTC)
        start = end - timedelta(seconds=self._seconds)
        try:
            return compare(window(self._log, start, end), start, end, self._max_rows)
        except PredictionLogUnavailable as exc:
            return exc
