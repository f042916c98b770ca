"""On-the-fly training augmentation: the variations photos have and Fashion-MNIST lacks.

Fashion-MNIST garments are centred, upright, filling the frame, sharp and noiseless, and its
shoes all face left; an upload is none of these for sure. These Keras layers sit in front of
the net while it trains: they vary every batch (seeded, so two runs with one seed see the same
batches). The saved and exported model is the net alone. Brightness needs no augmentation: the
compact net normalises it away (architectures.MaxNormalization).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

# The ranges the robustness benchmark tests (training/robustness.py), so training covers them.
MAX_ROTATION_DEGREES = 10
MIN_SCALE = 0.75
MAX_SHIFT_PIXELS = 3
# Nearest, not bilinear: bilinear resampling softens every training image a little, and the net
# then reads the sharp originals worse (bench/results/model-candidates-*).
INTERPOLATION = "nearest"
# Only this share of the images is moved at all; the rest pass as the dataset frames them (then
# blurred and noised). The net reads clean images better for it, and noisy and photo images too
# (bench/results/model-candidates-*).
MOVED_SHARE = 0.5
# A photo's softness and a sensor's noise: each image blended towards its 3x3 Gaussian blur by a
# weight in [0, MAX_BLUR], plus Gaussian noise of a σ in [0, MAX_NOISE_SIGMA], clipped to [0, 1].
MAX_BLUR = 1.0
MAX_NOISE_SIGMA = 0.08


class Sometimes(layers.Layer):
    """Applies ``inner`` to a random share of the images of a training batch; others pass as they are."""

    def __init__(self, inner: layers.Layer, share: float, seed: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.inner, self.share = inner, share
        self.seeds = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        self.inner.build(input_shape)

    def call(self, images, training=None):  # noqa: ANN001, ANN201 - Keras's signature
        if not training:
            return images
        changed = self.inner(images, training=True)
        chosen = keras.random.uniform((ops.shape(images)[0], 1, 1), seed=self.seeds) < self.share
        return ops.where(chosen, changed, images)


class Degrade(layers.Layer):
    """[N, 28, 28] in [0, 1]: each training image blurred and noised by its own random amount."""

    def __init__(self, max_blur: float, max_sigma: float, seed: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.max_blur, self.max_sigma = max_blur, max_sigma
        self.seeds = keras.random.SeedGenerator(seed)
        taps = np.array([1.0, 2.0, 1.0], dtype=np.float32)
        kernel = np.outer(taps, taps)
        self.kernel = (kernel / kernel.sum()).reshape(3, 3, 1, 1)

    def call(self, images, training=None):  # noqa: ANN001, ANN201 - Keras's signature
        if not training:
            return images
        per_image = (ops.shape(images)[0], 1, 1)
        blurred = ops.squeeze(ops.conv(ops.expand_dims(images, -1), self.kernel, padding="same"), -1)
        weight = keras.random.uniform(per_image, 0.0, self.max_blur, seed=self.seeds)
        sigma = keras.random.uniform(per_image, 0.0, self.max_sigma, seed=self.seeds)
        noise = sigma * keras.random.normal(ops.shape(images), seed=self.seeds)
        return ops.clip(images + weight * (blurred - images) + noise, 0.0, 1.0)


def stage(
    seed: int,
    interpolation: str = INTERPOLATION,
    moved_share: float = MOVED_SHARE,
    max_blur: float = MAX_BLUR,
    max_sigma: float = MAX_NOISE_SIGMA,
) -> keras.Sequential:
    """[N, 28, 28] -> [N, 28, 28]: half mirrored, turned, shrunk and shifted; all softened and noised.

    The keyword arguments are the module's constants; bench/model_candidates.py varies them.
    """
    geometry = {"fill_mode": "constant", "interpolation": interpolation}
    move = keras.Sequential(
        [
            layers.Reshape((28, 28, 1)),
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(MAX_ROTATION_DEGREES / 360, seed=seed + 1, **geometry),
            layers.RandomZoom((0.0, 1 - MIN_SCALE), seed=seed + 2, **geometry),  # > 0 zooms out
            layers.RandomTranslation(MAX_SHIFT_PIXELS / 28, MAX_SHIFT_PIXELS / 28, seed=seed + 3, **geometry),
            layers.Reshape((28, 28)),
        ],
        name="move",
    )
    return keras.Sequential(
        [Sometimes(move, moved_share, seed=seed + 4), Degrade(max_blur, max_sigma, seed=seed + 5)],
        name="augment",
    )


def describe() -> dict[str, object]:
    """The augmentation's ranges, for the artifact's metadata."""
    return {
        "moved_share": MOVED_SHARE,
        "mirror": "left-right, p=0.5",
        "rotation_degrees": MAX_ROTATION_DEGREES,
        "scale": [MIN_SCALE, 1.0],
        "shift_pixels": MAX_SHIFT_PIXELS,
        "interpolation": INTERPOLATION,
        "blur_weight": [0.0, MAX_BLUR],
        "noise_sigma": [0.0, MAX_NOISE_SIGMA],
    }
