"""The issue's "Speed" targets and the ours/baseline ratios, computed from a results dict."""

from __future__ import annotations

OURS = "ours-predlog-off"
OURS_LOGGING = "ours-predlog-sqlite"
BASELINE = "baseline-keras-predict"
REFERENCE = "reference-flask-litert"
RATIO_TARGET = 80.0
# bench/reference_app.py as measured in shared/notes/serving-performance.md (2026-11-24, same
# load: wrk -t1, one fixed boundary, 2 sync workers); the targets were set from these.
REFERENCE_NOTES = {"png-c16-fixed": 2824.0, "png-c1": 1503.0, "jpeg-c16": 1069.0}
CALIBRATION_RUN = "png-c16-fixed"
# (what, server, run, metric, "min" or "max", threshold); latencies in ms, memory in MB, time in s.
TARGETS = (
    ("28×28 PNG upload, 16 conns: req/s", "run", "png-c16", "requests_per_s", "min", 2500),
    ("28×28 PNG upload, 16 conns: p99 ms", "run", "png-c16", "p99_ms", "max", 10),
    ("28×28 PNG upload, 1 conn: p50 ms", "run", "png-c1", "p50_ms", "max", 1),
    ("600×800 JPEG upload, 16 conns: req/s", "run", "jpeg-c16", "requests_per_s", "min", 1000),
    ("batch of 256 images: images/s", "best-batch", None, "images_per_s", "min", 200_000),
    # Not speed: never scaled by the machine factor.
    ("RSS per worker MB (max)", "memory", None, "max_rss_mb", "max", 100),
    ("worker start s (median respawn to ready)", "start", None, "respawn_ready_s", "max", 0.5),
)


def _value(server: dict, kind: str, run: str | None, metric: str) -> tuple[float | None, str]:
    if kind == "run":
        r = server.get("runs", {}).get(run)
        return (r.get(metric) if r and not r.get("invalid") else None), run
    if kind == "best-batch":
        batch = {k: r for k, r in server.get("runs", {}).items() if k.startswith("batch") and not r.get("invalid")}
        if not batch:
            return None, "batch*"
        name = max(batch, key=lambda k: batch[k]["images_per_s"])
        return batch[name]["images_per_s"], name
    if kind == "memory":
        workers = server.get("workers", [])
        return (max(w["rss_mb"] for w in workers) if workers else None), "workers"
    if kind == "start":
        return server.get("worker_start", {}).get("respawn_ready_s_median"), "respawn"
    raise ValueError(kind)


def ratios(servers: dict) -> dict[str, float]:
    """ours/baseline for throughput, baseline/ours for latency, per run both servers made."""
    ours, base = servers.get(OURS, {}).get("runs", {}), servers.get(BASELINE, {}).get("runs", {})
    out = {}
    for name in sorted(set(ours) & set(base)):
        a, b = ours[name], base[name]
        if a.get("invalid") or b.get("invalid") or not b["requests_per_s"]:
            continue
        out[f"{name} req/s"] = a["requests_per_s"] / b["requests_per_s"]
        out[f"{name} p50 latency (baseline/ours)"] = b["p50_ms"] / a["p50_ms"]
    return out


def calibration(servers: dict) -> dict:
    """How fast this machine is against the notes' day, from the reference app run alongside ours.

    ``factor`` is the reference's req/s today over the notes' figure for the same run (0.8: the
    machine does 80 % of the work it did then). ``ours_vs_reference`` compares the two apps run
    by run, in this run.
    """
    runs = servers.get(REFERENCE, {}).get("runs", {})
    today = {k: r["requests_per_s"] for k, r in runs.items() if not r.get("invalid")}
    per_run = {k: today[k] / v for k, v in REFERENCE_NOTES.items() if k in today}
    ours = servers.get(OURS, {}).get("runs", {})
    versus = {k: ours[k]["requests_per_s"] / today[k] for k in today if k in ours and not ours[k].get("invalid")}
    return {
        "reference_notes_req_s": REFERENCE_NOTES,
        "reference_today_req_s": today,
        "factor_per_run": per_run,
        "factor": per_run.get(CALIBRATION_RUN),
        "ours_vs_reference": versus,
    }


def _scaled(limit: float, sense: str, kind: str, metric: str, factor: float | None) -> float | None:
    """The limit as it would read on this machine: throughput × factor, latency ÷ factor."""
    if factor is None or kind in ("memory", "start"):
        return None
    if metric.endswith("_ms"):
        return limit / factor
    return limit * factor


def check(servers: dict, factor: float | None = None) -> list[dict]:
    """One row per target and server of ours (logging off and on), plus the ratio target.

    Each speed row also carries the limit scaled by the machine factor (``calibration``) and
    whether the value meets that; ``pass`` is always against the limit as the issue wrote it.
    """
    rows = []
    for name in (OURS, OURS_LOGGING):
        if name not in servers:
            continue
        for what, kind, run, metric, sense, limit in TARGETS:
            value, source = _value(servers[name], kind, run, metric)
            scaled = _scaled(limit, sense, kind, metric, factor)
            rows.append(
                {
                    "server": name,
                    "target": what,
                    "source": source,
                    "value": value,
                    "limit": f"{'≥' if sense == 'min' else '≤'} {limit:,}",
                    "pass": _meets(value, sense, limit),
                    "scaled_limit": scaled,
                    "pass_scaled": None if scaled is None else _meets(value, sense, scaled),
                }
            )
    r = ratios(servers).get("png-c16 req/s")
    rows.append(
        {
            "server": OURS,
            "target": "ours/baseline req/s, 28×28 PNG, 16 conns",
            "source": "png-c16",
            "value": r,
            "limit": f"≥ {RATIO_TARGET:g}×",
            "pass": r is not None and r >= RATIO_TARGET,
        }
    )
    return rows


def _meets(value: float | None, sense: str, limit: float) -> bool:
    return value is not None and (value >= limit if sense == "min" else value <= limit)
