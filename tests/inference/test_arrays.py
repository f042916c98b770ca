"""Pixel arrays: 28×28 or 784 values in [0, 1], 0–255 read as gray levels where allowed."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_classifier.errors import InvalidInput
from fashion_classifier.inference.arrays import is_image_shape, pixel_batch, pixels_from_values, scale_pixels


def dataset_float(x: np.ndarray) -> np.ndarray:
    """Exactly how training scales the dataset."""
    return x.astype(np.float32) / 255.0


def test_the_image_shapes():
    assert is_image_shape((28, 28)) and is_image_shape([784])
    assert not any(is_image_shape(shape) for shape in [(), (28,), (1, 28, 28), (28, 27), (783,)])


def test_pixel_arrays_nested_flat_and_0_255(test_split):
    x = test_split[0][0]
    expected = dataset_float(x)
    assert np.array_equal(pixels_from_values(x.tolist()), expected)
    assert np.array_equal(pixels_from_values(x.reshape(-1).tolist()), expected)
    assert np.array_equal(pixels_from_values(expected.tolist()), expected)


@pytest.mark.parametrize(
    "values",
    [
        [[0.5] * 28] * 27,
        [0.1] * 783,
        [[float("nan")] * 28] * 28,
        [[-0.5] * 28] * 28,
        [[300] * 28] * 28,
        [["a"] * 28] * 28,
        "text",
        [[0.1] * 28] * 27 + [[0.1] * 27],
    ],
)
def test_bad_pixel_arrays_are_value_errors(values):
    with pytest.raises(ValueError):
        pixels_from_values(values)


def test_scale_pixels_strict_mode_refuses_0_255():
    batch = np.full((2, 28, 28), 0.5, dtype=np.float32)
    assert np.array_equal(scale_pixels(batch, allow_0_255=False), batch)
    batch[1, 0, 0] = 2.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scale_pixels(batch, allow_0_255=False)
    scaled = scale_pixels(batch * 100)  # image 0 max 50, image 1 max 200: both 0-255
    assert np.allclose(scaled[0], 50 / 255)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.uint8])
def test_scale_pixels_in_range_fast_path_matches_the_checked_path(dtype):
    rng = np.random.default_rng(3)
    values = rng.random((3, 28, 28)) if np.dtype(dtype).kind == "f" else rng.integers(0, 2, (3, 28, 28))
    values = values.astype(dtype)
    values[0, 0, :2] = [0.0, 1.0]  # both bounds are in range
    scaled = scale_pixels(values, allow_0_255=False)
    # What the full check makes of the same values (float32, clipped to [0, 1]).
    assert scaled.dtype == np.float32 and np.array_equal(scaled, np.clip(values.astype(np.float32), 0.0, 1.0))
    scaled[0, 0, 0] = 0.5  # a copy: the caller's array is not the model input
    assert values[0, 0, 0] == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e-3, 1.001, 1e300])
def test_scale_pixels_still_refuses_what_the_fast_path_passes_on(bad):
    values = np.full((2, 28, 28), 0.5)
    values[1, 3, 4] = bad
    with pytest.raises(ValueError, match="finite|in \\[0, 1\\]"):
        scale_pixels(values, allow_0_255=False)


def test_a_batch_of_arrays_is_scaled_per_image(test_split):
    x = test_split[0][:2]
    batch = pixel_batch([x[0].tolist(), dataset_float(x[1]).tolist()], "instances")  # 0–255 and [0, 1]
    assert batch.shape == (2, 28, 28) and batch.dtype == np.float32
    assert np.array_equal(batch, dataset_float(x))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ([[1, 2]], "'instances' arrays must be 28×28 (or 784) numbers, got shape [2]"),
        ([[0.5] * 784, [0.5] * 783], "'instances' arrays must all be 28×28 (or 784) numbers"),
        ([[-1.0] * 784], "'instances': pixel values must be in [0, 1] or [0, 255], got [-1, -1]"),
    ],
)
def test_a_bad_batch_of_arrays_is_invalid_input(arrays, message):
    with pytest.raises(InvalidInput) as caught:
        pixel_batch(arrays, "instances")
    assert str(caught.value) == message
