"""The architectures' own layers, on real test images: what each makes the net blind to."""

import numpy as np
import pytest

from fashion_classifier.training import robustness
from fashion_classifier.training.architectures import Canonicalize, MaxNormalization


@pytest.fixture(scope="module")
def images(dataset):
    return dataset.x_test[:200].astype(np.float32) / 255.0


def test_every_named_architecture_is_built_and_has_a_recipe():
    """config names the architectures for commands without TensorFlow; training builds them."""
    from fashion_classifier.config import ARCHITECTURES, DEFAULT_ARCHITECTURE
    from fashion_classifier.training import architectures

    assert sorted(ARCHITECTURES) == sorted(architectures.ARCHITECTURES) == sorted(architectures.RECIPES)
    assert DEFAULT_ARCHITECTURE in ARCHITECTURES and architectures.recipe(DEFAULT_ARCHITECTURE).augmented
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        architectures.recipe("resnet")


def test_max_normalization_makes_the_compact_net_blind_to_brightness(images):
    """A dimmed garment reaches the net as the bright one."""
    layer = MaxNormalization()
    bright = np.asarray(layer(images))
    assert np.allclose(bright.max(axis=(1, 2)), 1.0)
    assert np.allclose(np.asarray(layer(images * 0.55)), bright, atol=1e-5)
    assert not np.asarray(layer(np.zeros((1, 28, 28), np.float32))).any()  # a blank image stays blank


def test_canonicalize_makes_a_mirrored_garment_the_same_image(images):
    layer = Canonicalize()
    assert np.array_equal(np.asarray(layer(images[:, :, ::-1].copy())), np.asarray(layer(images)))


def test_canonicalize_leaves_fashion_mnist_garments_where_the_dataset_put_them(images):
    """The dataset centres each garment's box: its images pass unmoved, mirrored or not."""
    normalised = np.asarray(MaxNormalization()(images))
    out = np.asarray(Canonicalize()(normalised))
    same = np.all(out == normalised, axis=(1, 2))
    mirrored = np.all(out == normalised[:, :, ::-1], axis=(1, 2))
    assert (same | mirrored).mean() > 0.95
    assert 0.5 < same.mean() < 1  # most are heavier on the right, as the layer leaves them


def test_canonicalize_centres_a_garment_placed_anywhere(images):
    """A garment moved inside the frame comes back to the same place (an even move exactly: an
    odd-sized box cannot sit in the middle, and which side it takes follows the rounding)."""
    layer = Canonicalize()
    small = images[:, 2:-2, 2:-2]  # 24x24: room to move by 2 px either way
    moves = ((0, 0), (-2, 2), (2, -2), (2, 0))
    placed = [np.pad(small, ((0, 0), (2 + dy, 2 - dy), (2 + dx, 2 - dx))) for dy, dx in moves]
    first, *others = (np.asarray(layer(p)) for p in placed)
    for moved in others:
        assert np.array_equal(moved, first)


def test_canonicalize_brings_the_shifted_test_variant_back_towards_the_originals(images):
    """Shifted by up to 3 px (the robustness benchmark's variant), partly out of the frame."""
    layer = Canonicalize()
    shifted = robustness.make_variant("shifted", (images * 255).round().astype(np.uint8))
    before = np.abs(shifted - images).mean()
    after = np.abs(np.asarray(layer(shifted)) - np.asarray(layer(images))).mean()
    assert after < before / 2


def test_canonicalize_passes_a_blank_image_unchanged():
    blank = np.zeros((1, 28, 28), np.float32)
    assert not np.asarray(Canonicalize()(blank)).any()
