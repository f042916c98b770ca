"""On-the-fly training augmentation: the variations photos have and Fashion-MNIST lacks.

Fashion-MNIST garments are centred, upright, filling the frame, and its shoes all face left; an
upload is none of these for sure. These Keras preprocessing layers sit in front of the net while
it trains: they vary every batch (seeded, so two runs with one seed see the same batches). The
saved and exported model is the net alone. Brightness needs no augmentation: the compact net
normalises it away (architectures.MaxNormalization).
"""

from __future__ import annotations

import keras
from keras import layers

# The ranges the robustness benchmark tests (training/robustness.py), so training covers them.
MAX_ROTATION_DEGREES = 10
MIN_SCALE = 0.75
MAX_SHIFT_PIXELS = 3
# Nearest, not bilinear: bilinear resampling softens every training image a little, and the net
# then reads the sharp originals worse (5 epochs: clean 0.887 vs 0.862; model-candidates-*).
INTERPOLATION = "nearest"


def stage(seed: int, interpolation: str = INTERPOLATION) -> keras.Sequential:
    """[N, 28, 28] -> [N, 28, 28]: mirrored, rotated, shrunk and shifted in training."""
    geometry = {"fill_mode": "constant", "interpolation": interpolation}
    return keras.Sequential(
        [
            layers.Reshape((28, 28, 1)),
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(MAX_ROTATION_DEGREES / 360, seed=seed + 1, **geometry),
            layers.RandomZoom((0.0, 1 - MIN_SCALE), seed=seed + 2, **geometry),  # > 0 zooms out
            layers.RandomTranslation(MAX_SHIFT_PIXELS / 28, MAX_SHIFT_PIXELS / 28, seed=seed + 3, **geometry),
            layers.Reshape((28, 28)),
        ],
        name="augment",
    )


def describe() -> dict[str, object]:
    """The augmentation's ranges, for the artifact's metadata."""
    return {"mirror": "left-right, p=0.5", "rotation_degrees": MAX_ROTATION_DEGREES, "scale": [MIN_SCALE, 1.0],
            "shift_pixels": MAX_SHIFT_PIXELS, "interpolation": INTERPOLATION}
