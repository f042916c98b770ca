"""Model architectures. Every model maps float32 [N, 28, 28] pixels in [0, 1] to 10 logits."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

ARCHITECTURES: dict[str, Callable[[], keras.Model]] = {}


def _register(fn: Callable[[], keras.Model]) -> Callable[[], keras.Model]:
    ARCHITECTURES[fn.__name__] = fn
    return fn


@_register
def mlp() -> keras.Model:
    """Exactly the TensorFlow "basic classification" tutorial's model."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ],
        name="mlp",
    )


def _conv_block(filters: int) -> list[layers.Layer]:
    return [layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
            layers.MaxPooling2D()]


@_register
def cnn() -> keras.Model:
    """A small convolutional net: 0.933 test accuracy in about 5 minutes on 2 CPU cores.

    Three conv blocks (32 filters at 28x28, 64 at 14x14, 128 at 7x7) keep the cost near
    8 MMAC per image: the full-resolution stage is where convolutions get expensive on a CPU,
    so it stays narrow. Batch norm lets Adam train briskly; dropout keeps 15 epochs from
    overfitting. Measured here with seed 42 and batch 64: two blocks reach only 0.925.
    """
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            layers.Reshape((28, 28, 1)),
            *_conv_block(32),
            *_conv_block(64),
            *_conv_block(128),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.4),
            layers.Dense(10),
        ],
        name="cnn",
    )


# Batch size when none is given: the tutorial's Keras default for the MLP; the CNN's epochs
# cost half as much at 64 with the same accuracy.
DEFAULT_BATCH_SIZE = {"mlp": 32, "cnn": 64}


def build(architecture: str, total_steps: int) -> keras.Model:
    """A compiled model: Adam, SparseCategoricalCrossentropy(from_logits=True), accuracy.

    Adam starts at its default rate (1e-3) and decays it along a cosine to zero over
    ``total_steps``. The tutorial's constant rate leaves the MLP bouncing around 0.875-0.88
    test accuracy at the end of training (seeds 7 and 42: 0.878, 0.877); the decay lets the
    last epochs settle and lands at 0.890-0.894 with the same seeds. The model is unchanged.
    """
    try:
        model = ARCHITECTURES[architecture]()
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}") from None
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=max(total_steps, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
