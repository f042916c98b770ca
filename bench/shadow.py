"""What a shadow candidate costs the clients (issue 24): latency with shadow on against off, one run.

From the repository root, on a quiet machine::

    flock /tmp/fc-heavy.lock .venv/bin/python bench/shadow.py           # about 4 minutes
    flock /tmp/fc-heavy.lock .venv/bin/python bench/shadow.py --quick   # smoke run, results in var/bench/

``fashion-classifier serve`` (2 workers, prediction log off: the shadow's own cost, not the log's)
on a copy of the store, started afresh for each round. Rounds alternate (off, on, off, on, ...) so
the host's drift hits both. In an "on" round the store's candidate is a copy of the current
version in shadow mode (``CANDIDATE`` written before the start, so every worker has it loaded
when it answers): each request's image is predicted again by a model of the same cost, on the
worker's side thread. bench/loadgen.py sends one 28×28 PNG upload per request at a constant
rate (open loop: latency counts from when a request was due), one connection per request, at
each of ``--rates``.

Per round: the latency percentiles, failed requests, and from the metrics port the shadow's
predictions and drops. Each figure is the median over the rounds of its mode; the ratio is
on / off. Target, at the first rate: p99 on ≤ 1.15 × p99 off, with no failed request. A last
"overload" round (shadow on, at ``--overload`` times the last rate) shows where drops begin:
drops counted, served answers all there.

Results: printed, and ``bench/results/shadow-<date>.json`` and ``.md`` (``--quick``: ``var/bench/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import machine  # noqa: E402
import paths  # noqa: E402
from harness.server import start_serve  # noqa: E402
from inference.store_copies import publish_beside  # noqa: E402

from fashion_classifier.artifacts import rollout  # noqa: E402

ROOT = paths.ROOT
TARGET = 1.15


def shadow_counts(server) -> dict[str, float]:
    text = requests.get(server.metrics_url, timeout=5).text
    counts = {"shadow_predictions": 0.0, "shadow_dropped": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fc_shadow_predictions_total":
                counts["shadow_predictions"] += sample.value
            elif sample.name == "fc_shadow_dropped_total":
                counts["shadow_dropped"] += sample.value
    return counts


def one_round(store: Path, png: Path, work: Path, shadow: str | None, rate: float, seconds: float) -> dict:
    if shadow is None:
        (store / rollout.CANDIDATE).unlink(missing_ok=True)
    else:
        rollout.set_candidate(store, shadow, rollout.SHADOW)
    server = start_serve(work, store, workers=2, predlog="off", timeout=120)
    try:
        out = work / "loadgen"
        gen = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "loadgen.py"),
                "--url",
                server.base_url,
                "--png",
                str(png),
                "--rate",
                str(rate),
                "--duration",
                str(seconds),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 300,
        )
        if gen.returncode != 0:
            raise RuntimeError(f"loadgen failed: {gen.stderr[-3000:]}")
        report = json.loads((out / "loadgen.json").read_text())
        counts = shadow_counts(server)
    finally:
        server.stop()
    return {
        "shadow": shadow is not None,
        "rate": rate,
        "ok": report["ok"],
        "failed": report["failed"],
        "achieved_rate": report["achieved_rate"],
        "latency_ms": report["latency_ms"],
        **counts,
    }


def median(rounds: list[dict], key: str) -> float:
    return statistics.median(r["latency_ms"][key] for r in rounds)


def summarize(rounds: list[dict]) -> dict:
    off = [r for r in rounds if not r["shadow"]]
    on = [r for r in rounds if r["shadow"]]
    summary = {
        f"{name}_{key}_ms": median(group, key)
        for name, group in (("off", off), ("on", on))
        for key in ("p50", "p90", "p99")
    }
    summary.update(
        off_failed=sum(r["failed"] for r in off),
        on_failed=sum(r["failed"] for r in on),
        on_shadow_predictions=sum(r["shadow_predictions"] for r in on),
        on_shadow_dropped=sum(r["shadow_dropped"] for r in on),
    )
    summary["p99_ratio"] = summary["on_p99_ms"] / summary["off_p99_ms"]
    summary["pass"] = summary["p99_ratio"] <= TARGET and summary["on_failed"] == 0 and summary["off_failed"] == 0
    return summary


def markdown(results: dict) -> str:
    o, m = results["overload"], results["machine"]
    rates = ", ".join(f"{rate:,.0f}" for rate in results["rates"])
    lines = [
        f"# Shadow cost, {results['date']}",
        "",
        f"{m['cpus']} CPUs ({m['cpu']}). `fashion-classifier serve`, 2 workers, prediction log off; "
        f"bench/loadgen.py at {rates} req/s (one PNG upload per request, open loop), {results['seconds']:.0f} s a "
        f"round, {results['rounds']} rounds of each mode per rate, alternating. Shadow: a copy of "
        f"{results['version']} (the same cost). The target is judged at the first rate.",
    ]
    for rate, s in results["by_rate"].items():
        lines += [
            "",
            f"## {float(rate):,.0f} req/s",
            "",
            "| figure | shadow off | shadow on | on / off |",
            "|---|---:|---:|---:|",
        ]
        for key in ("p50", "p90", "p99"):
            off, on = s[f"off_{key}_ms"], s[f"on_{key}_ms"]
            lines.append(f"| latency {key}, ms | {off:.2f} | {on:.2f} | {on / off:.3f} |")
        lines += [
            f"| failed requests | {s['off_failed']} | {s['on_failed']} | |",
            f"| shadow predictions / dropped | | {s['on_shadow_predictions']:,.0f} / {s['on_shadow_dropped']:,.0f} | |",
        ]
    first = results["by_rate"][str(results["rates"][0])]
    lines += [
        "",
        f"Target at {results['rates'][0]:,.0f} req/s: p99 on / off ≤ {TARGET} with no failed request: "
        f"**{'PASS' if first['pass'] else 'FAIL'}** ({first['p99_ratio']:.3f}).",
        "",
        f"Overload, shadow on at {o['rate']:,.0f} req/s: {o['ok']:,} answered, {o['failed']:,} failed, "
        f"{o['shadow_predictions']:,.0f} shadow predictions, {o['shadow_dropped']:,.0f} dropped; "
        f"p99 {o['latency_ms']['p99']:.1f} ms.",
        "",
        "Rounds:",
        "",
        "| # | rate | shadow | ok | failed | p50 ms | p99 ms | shadow predictions | dropped |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(results["rounds_detail"], 1):
        lines.append(
            f"| {i} | {r['rate']:,.0f} | {'on' if r['shadow'] else 'off'} | {r['ok']:,} | {r['failed']} | "
            f"{r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.2f} | "
            f"{r['shadow_predictions']:,.0f} | {r['shadow_dropped']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Latency with a shadow candidate on and off (module docstring).")
    paths.add_path_args(p)
    p.add_argument(
        "--rates",
        default="400,800",
        help="requests per second, comma-separated; the target is judged at the first (default 400,800)",
    )
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=3, help="rounds of each mode")
    p.add_argument("--overload", type=float, default=2.0, help="the last round's rate, times the last of --rates")
    p.add_argument("--quick", action="store_true", help="1 round each of 8 s, results in var/bench/")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 8.0
    paths.resolve_paths(args, paths.SCRATCH if args.quick else paths.RESULTS)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="fc-shadow-") as tmp:
        work = Path(tmp)
        png, store = paths.scratch_inputs(work, args.data_dir, args.model_dir)
        version = (store / "CURRENT").read_text().strip()
        shadow = publish_beside(store, "shadow")
        rates = [float(rate) for rate in args.rates.split(",")]
        rounds = []
        for rate in rates:
            for i in range(args.rounds):
                for mode in (None, shadow):
                    name = f"{rate:.0f}-{i}-{'on' if mode else 'off'}"
                    r = one_round(store, png, work / name, mode, rate, args.seconds)
                    print(json.dumps(r), flush=True)
                    rounds.append(r)
        overload = one_round(store, png, work / "overload", shadow, rates[-1] * args.overload, args.seconds)
        print(json.dumps(overload), flush=True)
    by_rate = {str(rate): summarize([r for r in rounds if r["rate"] == rate]) for rate in rates}
    results = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.describe(ROOT),
        "rates": rates,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "version": version,
        "by_rate": by_rate,
        "rounds_detail": rounds,
        "overload": overload,
    }
    text = markdown(results)
    print(text)
    paths.write_results(args.out, f"shadow-{now:%Y-%m-%d}", results, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
