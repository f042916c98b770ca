"""Architecture candidates for the default model: accuracy under augmentation vs serving cost.

    .venv/bin/python bench/model_candidates.py ARCH EPOCHS [--batch-size 64] [--no-augment]
        [--moved-share 0.5] [--max-blur 1.0] [--max-noise 0.08]

Trains one candidate body (below) behind the training augmentation on 54,000 training images,
then reports the training time, LiteRT µs per image (one thread, one image per invoke, as
serving runs it) and accuracy on every test-set variant of training/robustness.py. Appends one
JSON line to bench/results/model-candidates-<date>.jsonl. Run it on a quiet machine: it
measures time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from fashion_classifier.artifacts import export  # noqa: E402
from fashion_classifier.data import load  # noqa: E402
from fashion_classifier.inference.predictor import Predictor  # noqa: E402
from fashion_classifier.training import architectures, augment, robustness  # noqa: E402
from fashion_classifier.training.pipeline import _seed_everything, scale  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _cbr(filters: int, strides: int = 1) -> list:
    return [
        layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
    ]


def _dsc(filters: int) -> list:
    return [
        layers.DepthwiseConv2D(3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.Conv2D(filters, 1, use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
    ]


CANDIDATES = {
    # plain 3x3 convs at half and three quarters of the cnn's width, global average pooling
    "c16": lambda: [
        *_cbr(16),
        layers.MaxPooling2D(),
        *_cbr(32),
        layers.MaxPooling2D(),
        *_cbr(64),
        layers.GlobalAveragePooling2D(),
    ],
    "c24": lambda: [
        *_cbr(24),
        layers.MaxPooling2D(),
        *_cbr(40),
        layers.MaxPooling2D(),
        *_cbr(80),
        layers.GlobalAveragePooling2D(),
    ],
    # one full conv at 28x28, depthwise-separable blocks after it
    "ds": lambda: [
        *_cbr(32),
        layers.MaxPooling2D(),
        *_dsc(64),
        layers.MaxPooling2D(),
        *_dsc(128),
        *_dsc(128),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.2),
    ],
    "ds2": lambda: [
        *_cbr(24, strides=2),
        *_dsc(48),
        *_dsc(64),
        layers.MaxPooling2D(),
        *_dsc(128),
        *_dsc(128),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.2),
    ],
}
# The default as training builds it (earlier results name its earlier shapes in their notes).
NETS = {"compact": architectures.compact}


def litert_us(path: Path, image: np.ndarray, n: int = 3000) -> float:
    predictor = Predictor(path)
    for _ in range(200):
        predictor.predict(image)
    started = time.perf_counter()
    for _ in range(n):
        predictor.predict(image)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch", choices=sorted([*CANDIDATES, *NETS]))
    p.add_argument("epochs", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument(
        "--interpolation",
        choices=("bilinear", "nearest"),
        default=augment.INTERPOLATION,
        help="of the rotation, zoom and shift augmentation",
    )
    p.add_argument("--moved-share", type=float, default=augment.MOVED_SHARE, help="share of images moved")
    p.add_argument("--max-blur", type=float, default=augment.MAX_BLUR, help="blur weight drawn in [0, this]")
    p.add_argument("--max-noise", type=float, default=augment.MAX_NOISE_SIGMA, help="noise σ drawn in [0, this]")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    args = p.parse_args()

    _seed_everything(42)
    data = load(args.data_dir)
    x, y = scale(data.x_train)[:-6000], data.y_train[:-6000].astype(np.int64)
    if args.arch in NETS:
        net = NETS[args.arch]()
    else:
        net = keras.Sequential(
            [keras.Input(shape=(28, 28)), layers.Reshape((28, 28, 1)), *CANDIDATES[args.arch](), layers.Dense(10)],
            name=args.arch,
        )
    stage = augment.stage(42, args.interpolation, args.moved_share, args.max_blur, args.max_noise)
    trainer = net if args.no_augment else keras.Sequential([keras.Input(shape=(28, 28)), stage, net])
    steps = -(-len(x) // args.batch_size) * args.epochs
    trainer.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    trainer.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        export.to_tflite(net, path)
        accuracy = {}
        for name in robustness.VARIANTS:
            probs = export.tflite_probabilities(path, robustness.make_variant(name, data.x_test))
            accuracy[name] = round(float((probs.argmax(1) == data.y_test).mean()), 4)
        us = litert_us(path, scale(data.x_test[:1]))
    row = {
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "arch": args.arch,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "augmented": not args.no_augment,
        "interpolation": args.interpolation,
        "moved_share": args.moved_share,
        "max_blur": args.max_blur,
        "max_noise": args.max_noise,
        "parameters": net.count_params(),
        "train_seconds": round(seconds),
        "litert_us_per_image": round(us, 1),
        **accuracy,
    }
    print(json.dumps(row))
    out = ROOT / "bench" / "results" / f"model-candidates-{row['date']}.jsonl"
    with open(out, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
