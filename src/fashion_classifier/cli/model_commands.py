"""Model commands: train, evaluate, predict, versions, config."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from fashion_classifier.cli import EXIT_FAILED, EXIT_UNAVAILABLE, CliError, argtypes
from fashion_classifier.cli.argtypes import whole_number
from fashion_classifier.config import ARCHITECTURES, DEFAULT_ARCHITECTURE, Settings

POSITIVE = whole_number(1)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, help="model store (default: FC_MODEL_DIR, else ./model)")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        help="directory with the four official Fashion-MNIST .gz files (default: FC_DATA_DIR; "
        "unset = download with keras.datasets, needs internet)",
    )
    p.add_argument("--limit", type=POSITIVE, help="use only the first N training and test images (quick runs)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and publish it as a new version",
        description="Train on Fashion-MNIST, evaluate, export to TFLite, publish atomically.",
    )
    _store_args(p)
    _data_args(p)
    p.add_argument(
        "--arch",
        default=DEFAULT_ARCHITECTURE,
        choices=ARCHITECTURES,
        help=f"architecture (default: {DEFAULT_ARCHITECTURE}; mlp is the TensorFlow tutorial's)",
    )
    p.add_argument("--epochs", type=POSITIVE, help="epochs (default: FC_EPOCHS, else compact 24, cnn and mlp 15)")
    p.add_argument(
        "--batch-size", type=POSITIVE, help="batch size (default: FC_BATCH_SIZE, else mlp 32, compact and cnn 64)"
    )
    p.add_argument("--seed", type=int, help="random seed (default: FC_SEED, 42)")
    p.add_argument("--keep", type=POSITIVE, help="versions to keep (default: FC_KEEP_VERSIONS, 5)")
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    p.add_argument("--json", action="store_true", help="print the published metadata as JSON at the end")
    p.add_argument(
        "--publish-as",
        choices=("current", "canary", "shadow"),
        default="current",
        help="make the new version current (default), or a rollout's candidate beside the current "
        "one (docs/rollouts.md)",
    )
    p.add_argument(
        "--weight",
        type=argtypes.percent,
        default=10.0,
        metavar="PERCENT",
        help="with --publish-as canary: the share of requests it answers (default: 10)",
    )
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate the current (or a given) version on the test set",
        description="Re-evaluate a published version's serving export on the test set.",
    )
    _store_args(p)
    _data_args(p)
    p.add_argument("--version", help="version id (default: the current one)")
    p.add_argument(
        "--robustness",
        action="store_true",
        help="accuracy on seeded variants of the test set (mirrored, shifted, scaled, rotated, "
        "contrast, noise, photo round trip) instead of the per-class report",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="classify image files with the current model",
        description="Classify one or more image files (png, jpg, gif, bmp) locally.",
    )
    _store_args(p)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("versions", help="list the model versions in the store")
    _store_args(p)
    p.set_defaults(handler=cmd_versions)

    p = sub.add_parser("config", help="print the effective settings (FC_* environment variables)")
    p.add_argument(
        "--markdown", action="store_true", help="print every variable's default and meaning as a Markdown table instead"
    )
    p.set_defaults(handler=cmd_config)


def _model_dir(args: argparse.Namespace, settings: Settings) -> Path:
    return args.model_dir if args.model_dir is not None else settings.model_dir


def _dataset(args: argparse.Namespace, settings: Settings):
    from fashion_classifier.data import DatasetError, load

    data_dir = args.data_dir if args.data_dir is not None else settings.data_dir
    try:
        dataset = load(data_dir)
    except DatasetError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    return dataset.limit(args.limit, args.limit) if args.limit else dataset


def cmd_train(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    dataset = _dataset(args, settings)
    # TensorFlow's C++ INFO/WARNING lines drown the progress output; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from fashion_classifier.training.pipeline import TrainOptions, dump, train
    except ImportError as exc:
        raise CliError(
            f"training needs TensorFlow: pip install 'fashion-classifier[train]' ({exc})", EXIT_UNAVAILABLE
        ) from None
    from fashion_classifier.artifacts.export import ExportError
    from fashion_classifier.artifacts.store import ArtifactError

    options = TrainOptions(
        architecture=args.arch,
        epochs=args.epochs or settings.epochs or None,
        batch_size=args.batch_size or settings.batch_size or None,
        seed=settings.seed if args.seed is None else args.seed,
        keep_versions=args.keep or settings.keep_versions,
        verbose=2 if args.quiet else 1,
        publish_as=args.publish_as,
        weight=args.weight,
    )
    try:
        if args.json:
            # stdout carries only the JSON document; progress goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                meta = train(dataset, _model_dir(args, settings), options)
        else:
            meta = train(dataset, _model_dir(args, settings), options)
    except (ExportError, ArtifactError, OSError) as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    if args.json:
        print(dump(meta))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import store
    from fashion_classifier.training.pipeline import evaluate_version
    from fashion_classifier.training.robustness import robustness_of_version

    settings = Settings.from_env()
    model_dir = _model_dir(args, settings)
    try:
        path = store.version_path(model_dir, args.version) if args.version else store.current_path(model_dir)
        if not path.is_dir():
            raise store.ArtifactError(f"version {args.version} not found in {model_dir}")
        meta = store.load_metadata(path)
        dataset = _dataset(args, settings)
        if args.robustness:
            return _print_robustness(meta, robustness_of_version(dataset, path), args.json)
        scores = evaluate_version(dataset, path)
    except store.ArtifactError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    result = {
        "version": meta["version"],
        "architecture": meta.get("architecture"),
        "test_examples": len(dataset.y_test),
        **scores,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"version {result['version']} ({result['architecture']}) on {result['test_examples']:,} test images")
    print(f"  accuracy {result['test_accuracy']:.4f}   loss {result['test_loss']:.4f}")
    print(f"  {'class':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for name, s in result["per_class"].items():
        print(f"  {name:<12} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['f1']:>6.3f} {s['support']:>8}")
    return 0


def _print_robustness(meta: dict, result: dict, as_json: bool) -> int:
    result = {"version": meta["version"], "architecture": meta.get("architecture"), **result}
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"version {result['version']} ({result['architecture']}) on {result['examples']:,} test images, "
        f"variants seeded with {result['seed']}"
    )
    print(f"  {'variant':<10} {'accuracy':>8}")
    for variant, accuracy in result["accuracy"].items():
        print(f"  {variant:<10} {accuracy:>8.4f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import store
    from fashion_classifier.inference.cli_predict import predict_files

    settings = Settings.from_env()
    try:
        return predict_files(_model_dir(args, settings), args.files, as_json=args.json)
    except store.ArtifactError as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


def cmd_versions(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import store

    settings = Settings.from_env()
    model_dir = _model_dir(args, settings)
    current = store.current_version(model_dir)
    versions = store.list_versions(model_dir)
    if not versions:
        raise CliError(f"no model versions in {model_dir}", EXIT_UNAVAILABLE)
    for version in versions:
        try:
            meta = store.load_metadata(store.version_path(model_dir, version))
            acc = f"{meta.get('test_accuracy', float('nan')):.4f}"
        except store.ArtifactError:
            acc = "unreadable"
        print(f"{'*' if version == current else ' '} {version}  accuracy {acc}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.markdown:
        print(Settings.markdown(), end="")
        return 0
    for name, value in Settings.from_env().describe():
        print(f"{name:<30} {value}")
    return 0
