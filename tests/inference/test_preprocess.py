"""Preprocessing: every supported kind of image ends as 28×28 float32 in the dataset's convention."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fashion_classifier.inference.preprocess import (
    ImageError,
    pixels_from_values,
    prepare_image,
    scale_pixels,
    sniff_format,
    to_png,
)


def dataset_float(x: np.ndarray) -> np.ndarray:
    """Exactly how training scales the dataset."""
    return x.astype(np.float32) / 255.0


def check_model_input(pixels: np.ndarray) -> None:
    assert pixels.shape == (28, 28) and pixels.dtype == np.float32
    assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_every_test_image_saved_as_png_round_trips_exactly(test_split, encode):
    images, _ = test_split
    for x in images:
        prepared = prepare_image(encode(x, "PNG"))
        assert not prepared.inverted
        assert np.array_equal(prepared.pixels, dataset_float(x))


@pytest.mark.parametrize("fmt", ["BMP", "GIF"])
def test_lossless_formats_round_trip_exactly(test_split, encode, fmt):
    images, _ = test_split
    for x in images[:300]:
        prepared = prepare_image(encode(x, fmt))
        assert prepared.format == fmt
        assert np.array_equal(prepared.pixels, dataset_float(x))


def test_jpeg_is_close_and_classified_the_same(test_split, encode, loaded_model):
    images, _ = test_split
    x = images[:300]
    jpeg = np.stack([prepare_image(encode(img, "JPEG", quality=95)).pixels for img in x])
    assert np.abs(jpeg - dataset_float(x)).mean() < 0.01
    same = loaded_model.predictor.predict(jpeg).argmax(1) == loaded_model.predictor.predict(dataset_float(x)).argmax(1)
    assert same.mean() >= 0.97


def test_palette_png_matches_grayscale(test_split, encode):
    x = test_split[0][1]
    palette = Image.fromarray(x).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    assert palette.mode == "P"
    prepared = prepare_image(encode(palette, "PNG"))
    assert np.abs(prepared.pixels - dataset_float(x)).max() <= 1 / 255 + 1e-7


def test_sixteen_bit_png_matches_eight_bit(test_split, encode):
    x = test_split[0][2]
    sixteen = Image.fromarray(x.astype(np.uint16) * 257)
    data = encode(sixteen, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    assert np.array_equal(prepare_image(data).pixels, dataset_float(x))


def test_rgb_png_uses_luma(test_split, encode):
    x = test_split[0][3]
    rgb = np.stack([x, x, x], axis=-1)
    assert np.array_equal(prepare_image(encode(rgb, "PNG")).pixels, dataset_float(x))


def test_animated_gif_uses_the_first_frame(test_split):
    first, second = test_split[0][0], test_split[0][1]
    buf = io.BytesIO()
    frames = [Image.fromarray(first), Image.fromarray(second)]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    assert np.array_equal(prepare_image(buf.getvalue()).pixels, dataset_float(first))


def _cutout(x: np.ndarray, dark_garment: bool) -> Image.Image:
    """A product cut-out: the garment opaque, the background fully transparent."""
    alpha = np.where(x > 0, 255, 0).astype(np.uint8)
    gray = (255 - x) if dark_garment else x
    rgba = np.stack([gray, gray, gray, alpha], axis=-1).astype(np.uint8)
    return Image.fromarray(rgba, mode="RGBA")


def _bright_garment(images: np.ndarray) -> np.ndarray:
    """A test image whose garment is mostly light (so its negative is clearly dark)."""
    return next(x for x in images if x[x > 0].mean() > 170)


def test_dark_cutout_on_transparency_is_inverted_onto_black(test_split, encode):
    x = _bright_garment(test_split[0])
    prepared = prepare_image(encode(_cutout(x, dark_garment=True), "PNG"))
    assert prepared.inverted
    assert np.abs(prepared.pixels - dataset_float(x)).max() <= 1 / 255 + 1e-7


def test_light_cutout_on_transparency_is_composited_onto_black(test_split, encode):
    x = _bright_garment(test_split[0])
    image = _cutout(x, dark_garment=False).convert("LA")
    prepared = prepare_image(encode(image, "PNG"))
    assert not prepared.inverted
    assert np.abs(prepared.pixels - dataset_float(x)).max() <= 1 / 255 + 1e-7


def test_gif_with_transparent_palette_entry(test_split):
    x = test_split[0][0]
    palette = Image.fromarray(x).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    buf = io.BytesIO()
    palette.save(buf, format="GIF", transparency=0)
    check_model_input(prepare_image(buf.getvalue()).pixels)


def _photo(x: np.ndarray, size: tuple[int, int], light_background: bool, fmt: str = "JPEG") -> bytes:
    """The garment scaled up into the middle of a larger RGB 'photo' with a margin."""
    w, h = size
    garment = Image.fromarray(x).resize((h * 2 // 3, h * 2 // 3), Image.Resampling.BICUBIC)
    canvas = Image.new("L", size, 0)
    canvas.paste(garment, ((w - garment.width) // 2, (h - garment.height) // 2))
    arr = np.asarray(canvas)
    if light_background:
        arr = 255 - arr
    buf = io.BytesIO()
    Image.fromarray(np.stack([arr] * 3, axis=-1)).save(buf, format=fmt, quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_photos_on_light_backgrounds_are_inverted_and_classified_like_the_dataset(test_split, loaded_model, fmt):
    images, _ = test_split
    reference = loaded_model.predictor.predict(dataset_float(images[:40]))
    confident = [i for i in range(40) if reference[i].max() > 0.95][:12]
    assert len(confident) >= 8
    agree = 0
    for i in confident:
        prepared = prepare_image(_photo(images[i], (600, 800), light_background=True, fmt=fmt))
        assert prepared.inverted and (prepared.width, prepared.height) == (600, 800)
        check_model_input(prepared.pixels)
        # Inverted, cropped and fitted like the dataset: close to the original 28×28 image.
        assert np.abs(prepared.pixels - dataset_float(images[i])).mean() < 0.2
        agree += int(loaded_model.predictor.predict(prepared.pixels[None])[0].argmax() == reference[i].argmax())
    assert agree >= len(confident) - 2


def test_dark_background_photo_is_not_inverted(test_split):
    prepared = prepare_image(_photo(test_split[0][0], (300, 300), light_background=False))
    assert not prepared.inverted
    assert prepared.pixels[10:18, 10:18].mean() > prepared.pixels[0].mean()


def test_aspect_ratio_is_kept_and_the_garment_centred(encode):
    tall = np.zeros((200, 120), dtype=np.uint8)
    tall[40:160, 50:70] = 255  # a 20×120 bar: aspect 1:6
    pixels = prepare_image(encode(tall)).pixels
    rows = np.flatnonzero(pixels.max(axis=1) > 0.5)
    cols = np.flatnonzero(pixels.max(axis=0) > 0.5)
    assert rows[0] == 0 and rows[-1] == 27  # longest side fills 28
    assert 3 <= len(cols) <= 6  # about 28 / 6 wide
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


@pytest.mark.parametrize("size", [(1, 1), (1, 500), (3000, 7), (29, 28), (2, 2)])
def test_any_size_gives_a_valid_input(encode, size):
    w, h = size
    arr = np.random.default_rng(0).integers(0, 256, size=(h, w), dtype=np.uint8)
    check_model_input(prepare_image(encode(arr)).pixels)


def test_bmp_one_bit_and_cmyk_jpeg(test_split, encode):
    x = test_split[0][0]
    one_bit = Image.fromarray(x).convert("1")
    check_model_input(prepare_image(encode(one_bit, "BMP")).pixels)
    cmyk = Image.fromarray(np.stack([x] * 3, axis=-1)).convert("CMYK")
    check_model_input(prepare_image(encode(cmyk, "JPEG")).pixels)


def test_exif_orientation_is_applied(encode):
    arr = np.zeros((60, 40), dtype=np.uint8)
    arr[40:, :] = 255  # stored bright at the bottom; Orientation 3 = rotate 180° to display
    exif = Image.Exif()
    exif[0x0112] = 3
    data = encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)
    pixels = prepare_image(data).pixels
    rows = np.flatnonzero(pixels.max(axis=1) > 0.5)
    assert rows.mean() < 14  # displayed bright at the top


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_decompression_bomb_is_refused_before_decoding():
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 900 M pixels, claims only
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )
    with pytest.raises(ImageError, match="decompression bomb") as exc:
        prepare_image(bomb)
    assert exc.value.status == 422


def test_pillow_pixel_limit_is_the_limit(monkeypatch, encode):
    data = encode(np.zeros((100, 100), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageError, match="decompression bomb"):
        prepare_image(data)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"hello, I am a text file\n", 415),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", 415),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 422),
        (b"GIF89a" + b"\xff" * 20, 422),
        (b"BM" + b"\x00" * 10, 422),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 30, 422),
    ],
)
def test_bad_files_get_the_right_status(data, status):
    with pytest.raises(ImageError) as exc:
        prepare_image(data)
    assert exc.value.status == status


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_truncated_files_are_422(test_split, encode, fmt):
    x = np.asarray(Image.fromarray(test_split[0][0]).resize((200, 200)))
    data = encode(x, fmt)
    with pytest.raises(ImageError) as exc:
        prepare_image(data[: len(data) // 2])
    assert exc.value.status == 422


def test_format_is_sniffed_from_content_not_name():
    assert sniff_format(b"\x89PNG\r\n\x1a\nxxxx") == "PNG"
    assert sniff_format(b"\xff\xd8\xff\xe1") == "JPEG"
    assert sniff_format(b"GIF87a") == "GIF"
    assert sniff_format(b"BMxx") == "BMP"
    assert sniff_format(b"<svg") is None


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


def test_to_png_enlarges_the_model_input(test_split):
    pixels = dataset_float(test_split[0][0])
    png = to_png(pixels, scale=6)
    image = Image.open(io.BytesIO(png))
    assert image.size == (168, 168)
    assert np.array_equal(np.asarray(image)[::6, ::6], test_split[0][0])
