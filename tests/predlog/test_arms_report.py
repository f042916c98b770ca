"""The arms report: per-version evidence from the log, its intervals, its bounded reading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from fashion_classifier.config import Settings
from fashion_classifier.predlog.arms_report import compare, wilson, window
from fashion_classifier.predlog.sqlite_log import SqliteLog

from .conftest import id_at, make_record

NOW = datetime.now(UTC)
HOUR_AGO = NOW - timedelta(hours=1)


def _rows(n, version, arm, right, latency=1.0, at=NOW, **changes):
    """n records of one arm made ``at``; the first ``right`` of them with correct feedback, the rest wrong."""
    rows = []
    for i in range(n):
        label = 3 if i < right else 4
        rows.append(
            make_record(
                3,
                model_version=version,
                arm=arm,
                latency_ms=latency + i,
                predicted_class=3,
                true_label=label,
                created_at=at,
                **changes,
            )
        )
    return rows


def test_wilson_matches_the_textbook_values():
    low, high = wilson(81, 100)
    assert (round(low, 4), round(high, 4)) == (0.7222, 0.8749)
    assert wilson(0, 0) is None
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 10)[0] == 0.0
    assert wilson(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)


def test_each_arm_gets_its_counts_accuracy_and_latency():
    rows = _rows(90, "v1", "current", right=81) + _rows(10, "v2", "candidate", right=5, latency=100.0)
    report = compare(rows, HOUR_AGO, NOW + timedelta(seconds=1), max_rows=1000)
    current, candidate = report.arms
    assert (current.arm, current.predictions, current.feedback, current.correct) == ("current", 90, 90, 81)
    assert current.accuracy == 0.9 and current.accuracy_interval[0] < 0.9 < current.accuracy_interval[1]
    assert (candidate.model_version, candidate.accuracy) == ("v2", 0.5)
    assert candidate.latency_p50_ms == pytest.approx(104.5) and candidate.latency_p99_ms == pytest.approx(108.91)
    assert report.rows == 100 and not report.truncated and report.shadows == []


def test_a_shadow_is_compared_with_the_served_class_and_with_the_truth():
    served = _rows(4, "v1", "current", right=4, shadow_version="v2", shadow_class=3, shadow_confidence=0.8)
    served += _rows(4, "v1", "current", right=0, shadow_version="v2", shadow_class=4, shadow_confidence=0.6)
    (shadow,) = compare(served, HOUR_AGO, NOW + timedelta(seconds=1), max_rows=100).shadows
    assert (shadow.model_version, shadow.served_by, shadow.compared, shadow.agreed) == ("v2", "v1", 8, 4)
    # It disagreed exactly where the served class was wrong, and was right there.
    assert shadow.agreement == 0.5 and shadow.feedback == 8 and shadow.accuracy == 1.0


def test_rows_outside_the_window_do_not_count_and_max_rows_bounds_the_reading():
    old = make_record(1, created_at=NOW - timedelta(hours=2), arm="current")
    rows = [*_rows(5, "v1", "current", right=5), old]
    report = compare(rows, HOUR_AGO, NOW + timedelta(seconds=1), max_rows=3)
    assert report.rows == 3 and report.truncated
    assert compare(rows, HOUR_AGO, NOW + timedelta(seconds=1), max_rows=5).truncated is False


def test_the_window_reads_the_log_newest_first_across_pages_and_days(tmp_path):
    log = SqliteLog(Settings(sqlite_path=tmp_path / "log.sqlite3", spool_dir=tmp_path / "spool"))
    try:
        moments = [NOW - timedelta(hours=h, minutes=m) for h in (0, 25, 50) for m in range(1, 6)]
        recs = [make_record(i, id=id_at(moment, 7), created_at=moment) for i, moment in enumerate(moments)]
        for rec in recs:
            log.record(rec)
        assert log.flush()
        start = NOW - timedelta(hours=26)
        got = list(window(log, start, NOW, page_size=2))
        within = sorted((r for r in recs if r.created_at >= start), key=lambda r: r.created_at, reverse=True)
        assert [r.id for r in got[: len(within)]] == [r.id for r in within]
        report = compare(got, start, NOW, max_rows=100)
        assert report.rows == 10
    finally:
        log.close()


def test_the_report_command_reads_the_configured_log(tmp_path):
    log = SqliteLog(Settings(sqlite_path=tmp_path / "log.sqlite3", spool_dir=tmp_path / "spool"))
    now = datetime.now(UTC)  # the command's window ends at its own now
    for rec in _rows(6, "v1", "current", right=3, at=now) + _rows(2, "v2", "candidate", right=2, at=now):
        log.record(rec)
        log.add_feedback(rec.id, rec.true_label)  # a record's own true_label is not written
    assert log.flush()
    log.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FC_")}
    env.update(FC_PREDLOG="sqlite", FC_SQLITE_PATH=str(tmp_path / "log.sqlite3"), FC_SPOOL_DIR=str(tmp_path / "s"))
    command = [sys.executable, "-m", "fashion_classifier.cli", "model", "report", "--since", "10m"]
    out = json.loads(subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, check=True).stdout)
    assert [(a["arm"], a["model_version"], a["predictions"], a["accuracy"]) for a in out["arms"]] == [
        ("current", "v1", 6, 0.5),
        ("candidate", "v2", 2, 1.0),
    ]
    text = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    assert "8 predictions" in text and "candidate" in text and "100.0 %" in text
    bad = subprocess.run([*command[:-1], "soon"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
