"""Training benchmark: test accuracy and training time of `mlp` and `cnn` on this machine.

    .venv/bin/python bench/training.py [--data-dir DIR] [--arch mlp cnn]

Trains each architecture with its defaults on the full official dataset into a temporary
store, one after another, and checks issue 2's targets: mlp >= 0.885 and cnn >= 0.925 test
accuracy, each in <= 10 minutes. Writes bench/results/training-<date>.json and .md and exits
non-zero when a target is missed. Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import paths  # noqa: E402
from machine import describe  # noqa: E402

TARGETS = {"mlp": 0.885, "cnn": 0.925}
MAX_SECONDS = 600


def train_metadata(data_dir: Path, *options: str) -> tuple[dict, float]:
    """``fashion-classifier train OPTIONS`` into a temporary store: (its metadata, wall seconds)."""
    with tempfile.TemporaryDirectory() as store:
        cmd = [
            sys.executable,
            "-m",
            "fashion_classifier.cli",
            "train",
            *options,
            "--model-dir",
            store,
            "--data-dir",
            str(data_dir),
            "--quiet",
            "--json",
        ]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"training {' '.join(options)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout), wall


def train(arch: str, data_dir: Path) -> dict:
    meta, wall = train_metadata(data_dir, "--arch", arch)
    return {
        "architecture": arch,
        "parameters": meta["parameters"],
        "epochs": meta["epochs"],
        "test_accuracy": meta["test_accuracy"],
        "test_loss": meta["test_loss"],
        "fit_seconds": meta["training_seconds"],
        "wall_seconds": round(wall, 1),  # includes data loading, evaluation, export and plots
        "accuracy_target": TARGETS[arch],
        "accuracy_ratio": round(meta["test_accuracy"] / TARGETS[arch], 4),
        "time_ratio": round(MAX_SECONDS / wall, 2),  # > 1 means inside the 10-minute budget
        "pass": meta["test_accuracy"] >= TARGETS[arch] and wall <= MAX_SECONDS,
    }


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"# Training benchmark {results['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB; Python {m['python']}; "
        f"commit {m['commit']}; load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}",
        "",
        "| arch | params | epochs | test accuracy | target | fit s | wall s (≤ 600) | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['architecture']} | {r['parameters']:,} | {r['epochs']} | {r['test_accuracy']:.4f} "
            f"| ≥ {r['accuracy_target']} | {r['fit_seconds']} | {r['wall_seconds']} "
            f"| {'PASS' if r['pass'] else '**FAIL**'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--arch", nargs="+", default=["mlp", "cnn"], choices=sorted(TARGETS))
    args = parser.parse_args()
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": describe(ROOT), "runs": []}
    for arch in args.arch:
        run = train(arch, args.data_dir)
        print(
            f"{arch}: accuracy {run['test_accuracy']:.4f} (target {run['accuracy_target']}), "
            f"{run['wall_seconds']} s wall -> {'PASS' if run['pass'] else 'FAIL'}",
            flush=True,
        )
        results["runs"].append(run)
    paths.write_results(paths.RESULTS, f"training-{results['date']}", results, markdown(results))
    return 0 if all(r["pass"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
