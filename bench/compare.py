"""Side-by-side ratios of several ``bench/peers.py`` runs of one server, made in one session.

Each run is ``LABEL=DIR`` (a peers.py ``--out`` directory holding one ``peers-*.json``); the first
label is the reference. Rounds of the same label (``old=a``, ``old=b``) are pooled by their
median, so alternating runs (ABAB) cancel the host's drift. Example::

    .venv/bin/python bench/compare.py --server ours-alone --name worker-2026-12-06 \\
        dec2ef7=var/bench/a1 dec2ef7=var/bench/a2 new=var/bench/b1 new=var/bench/b2

Writes ``bench/results/<name>.json`` (with every round's figures) and ``.md``: req/s, p50/p99
and server CPU per request for each workload, and each label's req/s as a ratio of the
reference's.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from paths import RESULTS

FIGURES = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_request", "errors_total")


def load(run_dir: Path, server: str) -> dict:
    (path,) = sorted(run_dir.glob("peers-*.json"))
    data = json.loads(path.read_text())
    return {"file": str(path), "commit": data["machine"]["commit"], "runs": data["servers"][server]["runs"]}


def pooled(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Median of each figure over the rounds, per workload."""
    workloads = runs[0]["runs"].keys()
    return {w: {f: statistics.median(r["runs"][w][f] for r in runs) for f in FIGURES} for w in workloads}


def compare(groups: dict[str, list[dict]]) -> dict:
    medians = {label: pooled(runs) for label, runs in groups.items()}
    reference = next(iter(medians))
    ratios = {
        label: {w: m[w]["requests_per_s"] / medians[reference][w]["requests_per_s"] for w in m}
        for label, m in medians.items()
    }
    rounds = {label: [{"file": r["file"], "figures": pooled([r])} for r in runs] for label, runs in groups.items()}
    return {"reference": reference, "medians": medians, "ratios": ratios, "rounds": rounds}


def markdown(result: dict, server: str, note: str) -> str:
    lines = [f"# {server}: {', '.join(result['medians'])} (median of each label's rounds)", ""]
    if note:
        lines += [note, ""]
    lines += [
        "| label | workload | req/s | p50 ms | p99 ms | CPU µs/req | errors | req/s ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, workloads in result["medians"].items():
        for w, f in workloads.items():
            lines.append(
                f"| {label} | {w} | {f['requests_per_s']:,.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} | "
                f"{f['server_cpu_us_per_request']:,.0f} | {f['errors_total']:.0f} | "
                f"{result['ratios'][label][w]:.3f}× |"
            )
    lines += ["", "Rounds (req/s per workload):", ""]
    for label, rounds in result["rounds"].items():
        for r in rounds:
            figures = ", ".join(f"{w} {f['requests_per_s']:,.0f}" for w, f in r["figures"].items())
            lines.append(f"- {label}: {figures}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="LABEL=DIR, the first label is the reference")
    p.add_argument("--server", default="ours-alone")
    p.add_argument("--name", required=True, help="results file name, without extension")
    p.add_argument("--note", default="", help="a paragraph for the report: what was compared, and how")
    args = p.parse_args(argv)
    groups: dict[str, list[dict]] = {}
    for item in args.runs:
        label, _, folder = item.partition("=")
        groups.setdefault(label, []).append(load(Path(folder), args.server))
    result = compare(groups)
    result["server"], result["note"] = args.server, args.note
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result, args.server, args.note)
    (RESULTS / f"{args.name}.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
