"""Withdraw a rollout's candidate that is measurably worse than the current version.

The evidence is the prediction log since the candidate was set (every worker and pod writes
there), and optionally a server's metrics:

- **live accuracy**: a canary's answers with feedback against the current version's; a shadow's
  class against the served class on the same answers with feedback. The candidate is withdrawn
  when each side has at least ``min_feedback`` answers of feedback and the 95 % interval of
  (candidate accuracy - current accuracy) lies wholly below ``-margin``: it is worse by more than
  the margin, and not by chance;
- **failures**: its share of failed inferences exceeds the current version's by more than
  ``error_margin``, over at least ``min_inferences`` of its inferences. From Prometheus, they are
  every pod's over the same window; from one server's ``/metrics``, that server's since its workers
  started. Counts that cannot be read leave accuracy judged alone, and the verdict says so.

A withdrawal is one ``rollout.withdraw`` with the reason ``auto-rollback``: logged, recorded in the
store's ``ROLLOUTS.jsonl`` with the figures, and counted by ``model status``.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fashion_classifier.artifacts import rollout, store
from fashion_classifier.predlog.arms_report import Z95, Report, compare, window
from fashion_classifier.predlog.base import PredictionLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rules:
    margin: float = 0.05  # accuracy points the candidate may lose before it is withdrawn
    min_feedback: int = 30  # answers of feedback each side needs before accuracy is judged
    error_margin: float = 0.01  # share of failed inferences above the current version's
    min_inferences: int = 100
    window_seconds: float = 3600.0  # evidence from the last hour at most (and since the candidate was set)
    max_rows: int = 200_000


@dataclass(frozen=True)
class Verdict:
    candidate: str
    withdraw: bool
    why: str
    candidate_accuracy: float | None = None
    current_accuracy: float | None = None
    candidate_feedback: int = 0
    current_feedback: int = 0


def accuracy_gap(candidate: tuple[int, int], current: tuple[int, int]) -> tuple[float, float, float]:
    """(difference, low, high): candidate minus current accuracy and its 95 % Wald interval, from
    (correct, feedback) pairs with feedback > 0."""
    (c1, n1), (c2, n2) = candidate, current
    p1, p2 = c1 / n1, c2 / n2
    half = Z95 * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p1 - p2, p1 - p2 - half, p1 - p2 + half


def judge(
    report: Report,
    candidate: rollout.Candidate,
    current: str,
    rules: Rules,
    inferences: dict[str, tuple[float, float]] | None = None,
) -> Verdict:
    """Whether the evidence in ``report`` (and the metrics' inference counts) condemns the candidate."""
    if candidate.mode == rollout.SHADOW:  # both judged on the same answers with feedback
        found = [s for s in report.shadows if s.model_version == candidate.version and s.served_by == current]
        feedback = sum(s.feedback for s in found)
        cand = (sum(s.correct for s in found), feedback)
        cur = (sum(s.served_correct for s in found), feedback)
    else:
        cand = _arm(report, candidate.version)
        cur = _arm(report, current)
    verdict = dict(
        candidate=candidate.version,
        candidate_feedback=cand[1],
        current_feedback=cur[1],
        candidate_accuracy=cand[0] / cand[1] if cand[1] else None,
        current_accuracy=cur[0] / cur[1] if cur[1] else None,
    )
    failing = _failing(candidate.version, current, rules, inferences or {})
    if failing:
        return Verdict(withdraw=True, why=failing, **verdict)
    if min(cand[1], cur[1]) < rules.min_feedback:
        return Verdict(
            withdraw=False,
            why=f"too little feedback yet ({cand[1]} on the candidate, {cur[1]} on the "
            f"current version; {rules.min_feedback} each are needed)",
            **verdict,
        )
    gap, low, high = accuracy_gap(cand, cur)
    if high < -rules.margin:
        return Verdict(
            withdraw=True,
            why=f"live accuracy {gap:+.3f} against the current version (95 % interval "
            f"{low:+.3f} to {high:+.3f}, below -{rules.margin:g})",
            **verdict,
        )
    return Verdict(
        withdraw=False,
        why=f"live accuracy {gap:+.3f} against the current version (95 % interval "
        f"{low:+.3f} to {high:+.3f}): not worse than -{rules.margin:g}",
        **verdict,
    )


def _arm(report: Report, version: str) -> tuple[int, int]:
    arms = [a for a in report.arms if a.model_version == version]
    return sum(a.correct for a in arms), sum(a.feedback for a in arms)


def _failing(candidate: str, current: str, rules: Rules, inferences: dict[str, tuple[float, float]]) -> str | None:
    ok, failed = inferences.get(candidate, (0.0, 0.0))
    if ok + failed < rules.min_inferences:
        return None
    base_ok, base_failed = inferences.get(current, (0.0, 0.0))
    ratio = failed / (ok + failed)
    base = base_failed / (base_ok + base_failed) if base_ok + base_failed else 0.0
    if ratio > base + rules.error_margin:
        return f"{ratio:.1%} of its inferences failed, against {base:.1%} of the current version's"
    return None


def inference_counts(url: str, timeout: float = 10.0) -> dict[str, tuple[float, float]]:
    """{model version: (inferences that ran, inferences that failed)} from a server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a URL the operator gives
        text = response.read().decode()
    counts: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            slot = {"fc_inference_duration_seconds_count": 0, "fc_inference_errors_total": 1}.get(sample.name)
            if slot is not None:
                counts.setdefault(sample.labels.get("model_version", ""), [0.0, 0.0])[slot] += sample.value
    return {version: (ok, failed) for version, (ok, failed) in counts.items()}


# Inferences that ran and that failed, summed over the release's pods, per model version.
PROMQL = {
    0: "sum by (model_version) (increase(fc_inference_duration_seconds_count{{{selector}}}[{seconds}s]))",
    1: "sum by (model_version) (increase(fc_inference_errors_total{{{selector}}}[{seconds}s]))",
}


def prometheus_counts(url: str, selector: str, seconds: float, timeout: float = 10.0) -> dict[str, tuple[float, float]]:
    """{model version: (inferences that ran, inferences that failed)} over the last ``seconds``, from
    a Prometheus server's HTTP API; ``selector`` picks the release's series (``namespace="fc"``)."""
    counts: dict[str, list[float]] = {}
    for slot, query in PROMQL.items():
        text = query.format(selector=selector, seconds=max(1, round(seconds)))
        address = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': text})}"
        try:
            with urllib.request.urlopen(address, timeout=timeout) as response:  # noqa: S310 - the operator's URL
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # Prometheus says why in the body (a bad selector: 400)
            raise ValueError(f"Prometheus answered {exc.code}: {_error_of(exc)}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise ValueError(f"Prometheus refused {text!r}: {body.get('error') if isinstance(body, dict) else body}")
        try:
            for series in body["data"]["result"]:
                version = series["metric"].get("model_version", "")
                counts.setdefault(version, [0.0, 0.0])[slot] += float(series["value"][1])
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"an answer from Prometheus without the expected shape ({exc!r})") from None
    return {version: (ok, failed) for version, (ok, failed) in counts.items()}


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error") or exc.reason)
    except (OSError, ValueError, AttributeError):
        return str(exc.reason)


# Inference counts over the window of the given length in seconds, or None: failures not judged.
InferenceSource = Callable[[float], dict[str, tuple[float, float]]]


def guard_once(
    model_dir: Path, predlog: PredictionLog, rules: Rules, inferences: InferenceSource | None = None
) -> Verdict | None:
    """Judge the store's candidate now and withdraw it if condemned; None without a candidate."""
    candidate = rollout.read_candidate(model_dir)
    current = store.current_version(model_dir)
    if candidate is None or current is None:
        return None
    end = datetime.now(UTC)
    start = end - timedelta(seconds=rules.window_seconds)
    since = _parse_time(candidate.since)
    if since is not None and since > start:
        start = since
    report = compare(window(predlog, start, end), start, end, rules.max_rows)
    counts, not_judged = _usable_counts(inferences, (end - start).total_seconds(), current)
    verdict = judge(report, candidate, current, rules, counts)
    if not_judged:  # accuracy is still judged: a monitoring outage does not switch the guard off
        verdict = replace(verdict, why=f"{verdict.why}; failed inferences not judged: {not_judged}")
    if verdict.withdraw:  # only the candidate judged: an operator may have moved on meanwhile
        rollout.withdraw(model_dir, rollout.AUTO_ROLLBACK, why=verdict.why, expected=candidate)
        log.warning("candidate %s withdrawn: %s", candidate.version, verdict.why)
    return verdict


def _usable_counts(
    source: InferenceSource | None, seconds: float, current: str
) -> tuple[dict[str, tuple[float, float]] | None, str | None]:
    """The source's counts, or None and why they cannot be used."""
    if source is None:
        return None, None
    try:
        counts = source(seconds)
    except (OSError, ValueError) as exc:
        return None, str(exc)
    if current not in counts:  # a selector that matches nothing would make every candidate look fine
        return None, f"no inference counts for the current version {current} (is the selector right?)"
    return counts, None


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
