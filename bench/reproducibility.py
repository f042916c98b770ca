"""Reproducibility: train a published version again with its recorded options and compare.

    flock /tmp/fc-heavy.lock .venv/bin/python bench/reproducibility.py [--version DIR]

Reads the version's architecture, epochs, batch size and seed from its ``metadata.json``
(default: the store's current version), trains the same recipe again into a temporary store
with ``fashion-classifier train``, and compares the two: test accuracy and every robustness
variant must agree within ±0.003 (issue 23), and the report says whether the exports are
bit-identical. Writes bench/results/reproducibility-<date>.json and .md; exits 1 when a figure
differs by more than the tolerance. Training takes as long as the version's did.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import paths  # noqa: E402
from machine import describe  # noqa: E402
from training import train_metadata  # noqa: E402

from fashion_classifier.artifacts import store  # noqa: E402

TOLERANCE = 0.003


def retrain(meta: dict, data_dir: Path) -> tuple[dict, float]:
    """The metadata of the same recipe trained again, and the run's wall seconds."""
    return train_metadata(
        data_dir,
        "--arch",
        meta["architecture"],
        "--epochs",
        str(meta["epochs"]),
        "--batch-size",
        str(meta["batch_size"]),
        "--seed",
        str(meta["seed"]),
    )


def figures(meta: dict) -> dict[str, float]:
    return {"test accuracy": meta["test_accuracy"], **meta["robustness"]["accuracy"]}


def compare(first: dict, second: dict) -> dict:
    rows, second_figures = [], figures(second)
    for name, value in figures(first).items():
        again = second_figures[name]
        rows.append(
            {
                "figure": name,
                "first": value,
                "second": again,
                "difference": round(again - value, 4),
                "pass": abs(again - value) <= TOLERANCE,
            }
        )
    return {
        "rows": rows,
        "same_tflite": first["files"][store.TFLITE] == second["files"][store.TFLITE],
        "same_temperature": first["calibration"]["temperature"] == second["calibration"]["temperature"],
        "pass": all(r["pass"] for r in rows),
    }


def markdown(results: dict) -> str:
    m, c = results["machine"], results["comparison"]
    lines = [
        f"# Reproducibility, {results['date']}: {results['version']} trained again",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs; Python {m['python']}; commit {m['commit']}. "
        f"Recipe: {results['architecture']}, {results['epochs']} epochs, batch {results['batch_size']}, "
        f"seed {results['seed']}; the second run took {results['second_training_seconds']} s of training. "
        f"Command: `bench/reproducibility.py`.",
        "",
        f"| figure | first | second | difference | within ±{TOLERANCE} |",
        "|---|---:|---:|---:|---|",
    ]
    for r in c["rows"]:
        lines.append(
            f"| {r['figure']} | {r['first']:.4f} | {r['second']:.4f} | {r['difference']:+.4f} "
            f"| {'PASS' if r['pass'] else '**FAIL**'} |"
        )
    lines += [
        "",
        f"Exports bit-identical: {'yes' if c['same_tflite'] else 'no'}; "
        f"same calibration temperature: {'yes' if c['same_temperature'] else 'no'}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=Path, help="version directory (default: the store's current version)")
    paths.add_path_args(parser)
    args = parser.parse_args()
    paths.resolve_paths(args, paths.RESULTS)
    version_dir = args.version or store.current_path(args.model_dir)
    first = store.load_metadata(version_dir)
    second, wall = retrain(first, args.data_dir)
    comparison = compare(first, second)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": describe(ROOT),
        "version": first["version"],
        "architecture": first["architecture"],
        "epochs": first["epochs"],
        "batch_size": first["batch_size"],
        "seed": first["seed"],
        "second_training_seconds": second["training_seconds"],
        "wall_seconds": round(wall, 1),
        "comparison": comparison,
    }
    for row in comparison["rows"]:
        print(
            f"{row['figure']:>14}: {row['first']:.4f} then {row['second']:.4f} -> {'PASS' if row['pass'] else 'FAIL'}"
        )
    paths.write_results(args.out, f"reproducibility-{results['date']}", results, markdown(results))
    return 0 if comparison["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
