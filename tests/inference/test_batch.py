"""The one decoding path for encoded images: one decode budget per request, failures named."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_classifier.errors import EmptyImage, InvalidInput, TooLarge, UndecodableImage, UnsupportedImageType
from fashion_classifier.inference.batch import check_count, decode_images


def test_images_become_one_batch_with_their_sizes(test_split, encode):
    images = test_split[0][:2]
    batch = decode_images([encode(x) for x in images], lambda i: f"image {i}", filenames=["a.png", None])
    assert batch.pixels.shape == (2, 28, 28) and batch.pixels.dtype == np.float32
    assert np.array_equal(batch.pixels, images.astype(np.float32) / 255)
    assert [(info.filename, info.width, info.height) for info in batch.infos] == [("a.png", 28, 28), (None, 28, 28)]
    assert [image.format for image in batch.prepared] == ["PNG", "PNG"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"", EmptyImage), (b"text", UnsupportedImageType), (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, UndecodableImage)],
)
def test_a_failure_keeps_its_kind_and_names_the_image(test_split, encode, data, kind):
    with pytest.raises(kind) as caught:
        decode_images([encode(test_split[0][0]), data], lambda i: f"image {i}")
    assert str(caught.value).startswith("image 1: ")


def test_the_count_rule():
    check_count(1, 1)
    with pytest.raises(InvalidInput, match="no images in the request"):
        check_count(0, 4)
    with pytest.raises(TooLarge, match=r"too many images in one request: 5 \(the limit is 4\)"):
        check_count(5, 4)
