"""Model architectures. Every model maps float32 [N, 28, 28] pixels in [0, 1] to 10 logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers, ops

from fashion_classifier.training import augment

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
    return [
        layers.Conv2D(filters, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(),
    ]


@_register
def cnn() -> keras.Model:
    """A small convolutional net; its accuracy and training time: bench/results/training-*.md.

    Three conv blocks (32 filters at 28x28, 64 at 14x14, 128 at 7x7) keep the cost near
    8 MMAC per image: the full-resolution stage is where convolutions get expensive on a CPU,
    so it stays narrow. Batch norm lets Adam train briskly; dropout keeps 15 epochs from
    overfitting. Two blocks fell short of the accuracy target.
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


@keras.saving.register_keras_serializable(package="fashion_classifier")
class MaxNormalization(layers.Layer):
    """Divides each image by its brightest pixel: a dim or washed-out garment looks like a bright one.

    Fashion-MNIST images peak at 254-255 (92 % at 255), so this barely touches them; an upload whose
    garment peaks lower (a grey shirt on white, a dim photo) reaches the net at full range.
    """

    def call(self, images):  # noqa: ANN001, ANN201 - Keras's signature
        peak = keras.ops.max(images, axis=(1, 2), keepdims=True)
        return images / keras.ops.maximum(peak, 1e-3)


@keras.saving.register_keras_serializable(package="fashion_classifier")
class Canonicalize(layers.Layer):
    """Centres each garment's bounding box in the frame, then mirrors the image if its left half is
    the heavier: a garment off-centre or facing the other way reaches the net as a centred one
    facing the usual way (most Fashion-MNIST images are heavier on the right: a shoe's heel).

    Fashion-MNIST frames each garment by its bounding box, so its own images pass unmoved (their
    centre of mass is off the middle: centring that cut their edges, docs/model.md). The box is
    the rows and columns with a pixel above ``THRESHOLD`` (of the brightest, after
    ``MaxNormalization``); noise that crosses it everywhere leaves the image in place. Mirroring
    is exact (an image and its mirror come out the same); shifts are whole pixels, written as two
    small matrix products, and a garment moved partly out of the frame stays cut.
    """

    THRESHOLD = 0.05

    def call(self, images):  # noqa: ANN001, ANN201 - Keras's signature
        size = images.shape[1]
        grid = ops.arange(size, dtype="float32")
        middle = (size - 1) / 2
        dy = ops.round(middle - _box_centre(ops.max(images, axis=2) > self.THRESHOLD))
        dx = ops.round(middle - _box_centre(ops.max(images, axis=1) > self.THRESHOLD))
        # shift_y[n, i, k] = 1 where output row i is input row k = i - dy; columns likewise
        shift_y = ops.cast(ops.equal(grid[None, None, :], grid[None, :, None] - dy[:, None, None]), "float32")
        shift_x = ops.cast(ops.equal(grid[None, :, None], grid[None, None, :] - dx[:, None, None]), "float32")
        centred = ops.matmul(ops.matmul(shift_y, images), shift_x)
        half = size // 2
        left = ops.sum(centred[:, :, :half], axis=(1, 2))
        right = ops.sum(centred[:, :, size - half :], axis=(1, 2))
        return ops.where((left > right)[:, None, None], ops.flip(centred, axis=2), centred)


def _box_centre(lit):  # noqa: ANN001, ANN202 - tensors
    """[N, size] bool (rows or columns with ink) -> [N] float: the middle of the first and last lit
    ones; (size - 1) / 2 when none is lit (first = size, last = -1)."""
    size = lit.shape[1]
    grid = ops.arange(size, dtype="float32")
    unlit = (1.0 - ops.cast(lit, "float32")) * size  # pushes unlit ones past either end
    return (ops.min(grid + unlit, axis=1) + ops.max(grid - unlit, axis=1)) / 2


def load(path: Path) -> keras.Model:
    """A saved model.keras (this module registers the layers it may contain)."""
    return keras.models.load_model(path, compile=False)


def _conv_bn_relu(filters: int) -> list[layers.Layer]:
    return [layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU()]


def _separable(filters: int) -> list[layers.Layer]:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm: a ninth of a full conv's cost."""
    return [
        layers.DepthwiseConv2D(3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.Conv2D(filters, 1, use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
    ]


@_register
def compact() -> keras.Model:
    """The default: invariant to what photos vary, sized for the serving budget (about 2 MMAC).

    Brightness is normalised away first (``MaxNormalization``), then position and facing
    (``Canonicalize``): the net sees every garment centred and facing one way, and spends its
    capacity on the garments themselves. One full conv at 28x28 (32 filters) reads the pixels;
    depthwise-separable blocks at 14x14 and 7x7 do the rest, and a linear head reads the 7x7 map
    (where a garment's parts are matters: a shirt's sleeves, a boot's shaft). It learns the rest of
    its invariance from augmented batches (``Recipe.augmented``), and underfits them rather than
    overfits, so it has no dropout.
    Candidates, their accuracy and cost: bench/results/model-candidates-*.jsonl.
    """
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            MaxNormalization(),
            Canonicalize(),
            layers.Reshape((28, 28, 1)),
            *_conv_bn_relu(32),
            layers.MaxPooling2D(),
            *_separable(64),
            layers.MaxPooling2D(),
            *_separable(128),
            *_separable(128),
            layers.Flatten(),
            layers.Dense(10),
        ],
        name="compact",
    )


@dataclass(frozen=True)
class Recipe:
    """How an architecture trains when the command line does not say."""

    batch_size: int
    epochs: int
    learning_rate: float
    augmented: bool = False  # train on moved, blurred and noised batches (training/augment.py)


# The tutorial's Keras defaults for the MLP; the CNN's epochs cost half as much at 64 with the same
# accuracy; the compact net's 24 epochs fit the 20-minute training budget on 2 cores.
RECIPES = {
    "mlp": Recipe(batch_size=32, epochs=15, learning_rate=1e-3),
    "cnn": Recipe(batch_size=64, epochs=15, learning_rate=1e-3),
    "compact": Recipe(batch_size=64, epochs=24, learning_rate=2e-3, augmented=True),
}


def recipe(architecture: str) -> Recipe:
    """The architecture's recipe; ValueError names the choices for an unknown one."""
    try:
        return RECIPES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}") from None


def build(architecture: str, total_steps: int, seed: int = 42) -> tuple[keras.Model, keras.Model]:
    """(trainer, net): the compiled model to fit, and the net inside it to save and export.

    For an augmented recipe the trainer is the net behind the augmentation layers, which only
    act in training; otherwise both are the same model. Adam's rate decays along a cosine to
    zero over ``total_steps``: the tutorial's constant rate leaves the MLP's test accuracy
    bouncing between epochs; the decay lands it higher and steadier.
    """
    how = recipe(architecture)
    net = trainer = ARCHITECTURES[architecture]()
    if how.augmented:
        trainer = keras.Sequential(
            [keras.Input(shape=(28, 28)), augment.stage(seed), net], name=f"{architecture}_training"
        )
    schedule = keras.optimizers.schedules.CosineDecay(how.learning_rate, decay_steps=max(total_steps, 1))
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return trainer, net
