"""The training augmentation: seeded, inactive outside training, and varying what it says it varies."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_classifier.training import augment


@pytest.fixture(scope="module")
def batch(dataset) -> np.ndarray:
    return dataset.x_test[:256].astype(np.float32) / 255.0


def _augmented(images: np.ndarray, seed: int = 42) -> np.ndarray:
    return np.asarray(augment.stage(seed)(images, training=True))


def test_one_seed_gives_the_same_batches_and_another_seed_others(batch):
    first, again, other = _augmented(batch), _augmented(batch), _augmented(batch, seed=7)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_outside_training_the_images_pass_untouched(batch):
    np.testing.assert_array_equal(np.asarray(augment.stage(42)(batch, training=False)), batch)


def test_every_image_changes_and_stays_a_valid_image(batch):
    out = _augmented(batch)
    assert out.shape == batch.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(np.abs(out - batch).reshape(len(batch), -1).max(axis=1) > 0)  # noise, at least


def test_a_share_is_moved_and_the_rest_passes_as_framed(batch):
    stage = augment.stage(42)
    degrade = stage.layers[-1]
    degrade.max_blur = degrade.max_sigma = 0.0  # geometry alone
    moved = np.asarray(stage(batch, training=True))
    untouched = np.mean([np.array_equal(m, b) for m, b in zip(moved, batch, strict=True)])
    assert untouched == pytest.approx(1 - augment.MOVED_SHARE, abs=0.1)


def test_describe_names_the_ranges_training_used():
    described = augment.describe()
    assert described["shift_pixels"] == augment.MAX_SHIFT_PIXELS
    assert described["moved_share"] == augment.MOVED_SHARE
    assert described["noise_sigma"] == [0.0, augment.MAX_NOISE_SIGMA]
