"""The robustness benchmark: accuracy on the official test set and on fixed, seeded variants of it.

Each variant is one way real uploads differ from the dataset: a garment facing the other way,
off-centre, smaller, tilted, with less contrast, noisy, or a shop photo that has been through
the upload preprocessing. The variants are seeded, so every model is measured on the same
images; each variant draws from its own generator, derived from the seed and the variant's
name, so adding a variant changes none of the others. Only numpy and Pillow: serving machines
(no TensorFlow) can run it against a version's LiteRT export.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from fashion_classifier.artifacts import store
from fashion_classifier.data import Dataset
from fashion_classifier.inference.preprocess import prepare_image

VARIANTS: tuple[str, ...] = ("clean", "mirrored", "shifted", "scaled", "rotated", "contrast", "noise", "photo")
# Fixed, and independent of the training seed: every model meets the same variants.
DEFAULT_SEED = 42

SIZE = 28
MAX_SHIFT = 3  # pixels, either way, on both axes
SCALE_RANGE = (0.75, 1.0)
MAX_ANGLE = 10.0  # degrees, either way
CONTRAST_RANGE = (0.5, 1.0)
NOISE_SIGMA = 0.05  # on [0, 1] pixels
PHOTO_SIZE = 224
PHOTO_BLUR = 2.0  # Gaussian radius at 224 px: a quarter of one dataset pixel
PHOTO_QUALITY = 75

Predict = Callable[[np.ndarray], np.ndarray]


def make_variants(images: np.ndarray, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Every variant of uint8 test images [N, 28, 28], as float32 [N, 28, 28] in [0, 1]."""
    return {name: make_variant(name, images, seed) for name in VARIANTS}


def make_variant(name: str, images: np.ndarray, seed: int = DEFAULT_SEED) -> np.ndarray:
    """One variant (see :data:`VARIANTS`); the same seed gives the same array."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"expected uint8 images [N, 28, 28], got {images.dtype} {list(images.shape)}")
    if name not in _BUILDERS:
        raise ValueError(f"unknown variant {name!r}; one of {', '.join(VARIANTS)}")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    out = _BUILDERS[name](images, rng)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def evaluate(predict: Predict, images: np.ndarray, labels: np.ndarray, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Top-1 accuracy of ``predict`` (float32 [N, 28, 28] → probabilities [N, 10]) on each variant.

    One variant is held in memory at a time.
    """
    labels = np.asarray(labels)
    accuracy = {}
    for name in VARIANTS:
        probs = np.asarray(predict(make_variant(name, images, seed)))
        accuracy[name] = round(float(np.mean(probs.argmax(axis=1) == labels)), 4)
    return {"seed": seed, "examples": len(labels), "accuracy": accuracy}


def robustness_of_version(dataset: Dataset, version_dir: Path, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The benchmark for a published version's serving export, run with LiteRT as serving runs it."""
    from fashion_classifier.artifacts import export

    store.verify(version_dir)
    path = version_dir / store.TFLITE
    return evaluate(lambda x: export.tflite_probabilities(path, x), dataset.x_test, dataset.y_test, seed)


def _scale(images: np.ndarray) -> np.ndarray:
    # Divide (not multiply by 1/255) to match training's scaling bit for bit.
    return images.astype(np.float32) / np.float32(255)


def _clean(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _scale(images)


def _mirrored(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _scale(images)[:, :, ::-1]


def _shifted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by its own whole-pixel offset in [-3, 3] on both axes; black fills in."""
    n = len(images)
    dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(2, n))
    padded = np.pad(_scale(images), ((0, 0), (MAX_SHIFT, MAX_SHIFT), (MAX_SHIFT, MAX_SHIFT)))
    grid = np.arange(SIZE)
    rows = (MAX_SHIFT - dy)[:, None, None] + grid[None, :, None]
    cols = (MAX_SHIFT - dx)[:, None, None] + grid[None, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols]


def _scaled(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image shrunk by its own factor in [0.75, 1.0] (bilinear) and centred on black."""
    factors = rng.uniform(*SCALE_RANGE, size=len(images))
    out = np.zeros((len(images), SIZE, SIZE), dtype=np.float32)
    for i, (image, factor) in enumerate(zip(_scale(images), factors, strict=True)):
        side = max(1, round(SIZE * factor))
        small = np.asarray(Image.fromarray(image, mode="F").resize((side, side), Image.Resampling.BILINEAR))
        top = (SIZE - side) // 2
        out[i, top : top + side, top : top + side] = small
    return out


def _rotated(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image turned about its centre by its own angle in [-10°, 10°] (bilinear), black fill."""
    angles = rng.uniform(-MAX_ANGLE, MAX_ANGLE, size=len(images))
    out = np.empty((len(images), SIZE, SIZE), dtype=np.float32)
    for i, (image, angle) in enumerate(zip(_scale(images), angles, strict=True)):
        im = Image.fromarray(image, mode="F")
        out[i] = np.asarray(im.rotate(float(angle), resample=Image.Resampling.BILINEAR, fillcolor=0.0))
    return out


def _contrast(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image dimmed towards black by its own factor in [0.5, 1.0]: ``f·x``.

    Towards black, not around the mean: a washed-out upload reaches the model this way, since
    the upload preprocessing subtracts the background level (a gray background would not).
    """
    factors = rng.uniform(*CONTRAST_RANGE, size=len(images)).astype(np.float32)
    return _scale(images) * factors[:, None, None]


def _noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of σ 0.05 added to every pixel, clipped to [0, 1]."""
    x = _scale(images)
    return np.clip(x + rng.normal(0.0, NOISE_SIGMA, size=x.shape).astype(np.float32), 0.0, 1.0)


def _photo(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The page's path for a shop photo: each image made into one, then prepared as an upload.

    Upscaled to 224×224 (bicubic), inverted to a dark garment on white, slightly blurred, saved
    as JPEG quality 75, then decoded by :func:`~fashion_classifier.inference.preprocess.prepare_image`
    exactly as serving does (inverting back, cropping to the garment, fitting into 28×28).
    """
    out = np.empty((len(images), SIZE, SIZE), dtype=np.float32)
    blur = ImageFilter.GaussianBlur(PHOTO_BLUR)
    for i, image in enumerate(images):
        big = Image.fromarray(image, mode="L").resize((PHOTO_SIZE, PHOTO_SIZE), Image.Resampling.BICUBIC)
        shop = Image.fromarray(255 - np.asarray(big), mode="L").filter(blur)
        buf = io.BytesIO()
        shop.save(buf, format="JPEG", quality=PHOTO_QUALITY)
        out[i] = prepare_image(buf.getvalue()).pixels
    return out


_BUILDERS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "clean": _clean,
    "mirrored": _mirrored,
    "shifted": _shifted,
    "scaled": _scaled,
    "rotated": _rotated,
    "contrast": _contrast,
    "noise": _noise,
    "photo": _photo,
}
