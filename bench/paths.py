"""The options every benchmark shares: which model store, which dataset, where results go."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashion_classifier.config import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "var" / "bench"  # smoke runs: never overwrite real results


def add_path_args(p: argparse.ArgumentParser, out_help: str | None = None) -> None:
    p.add_argument("--model-dir", type=Path, help="model store (default: FC_MODEL_DIR, else ./model)")
    p.add_argument("--data-dir", type=Path, help="Fashion-MNIST files (default: FC_DATA_DIR, else ../shared/...)")
    p.add_argument("--out", type=Path, help=out_help or "results directory (default bench/results/, quick var/bench/)")


def resolve_paths(args: argparse.Namespace, default_out: Path | None) -> None:
    settings = Settings.from_env()
    args.model_dir = (args.model_dir or settings.model_dir).resolve()
    args.data_dir = args.data_dir or settings.data_dir or ROOT.parent / "shared" / "data" / "fashion-mnist"
    args.out = args.out or default_out


def write_results(out: Path, name: str, results: dict, markdown: str) -> Path:
    """``<out>/<name>.json`` and ``.md``, the pair every benchmark leaves; returns the stem."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / name
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown)
    print(f"wrote {stem}.json and {stem}.md")
    return stem


def scratch_inputs(work: Path, data_dir: Path, model_dir: Path) -> tuple[Path, Path]:
    """In ``work``: a 28×28 test PNG, and a private copy of the model store (without a rollout
    candidate) that a benchmark may publish into, never ``model/`` itself."""
    import shutil

    from harness.images import encode, load_test_split  # tests/ is on the path of every benchmark

    images, _ = load_test_split(data_dir)
    png = work / "fashion-28x28.png"
    png.write_bytes(encode(images[0], "PNG"))
    store = work / "model"
    shutil.copytree(model_dir, store, ignore=shutil.ignore_patterns("CANDIDATE"))
    return png, store
