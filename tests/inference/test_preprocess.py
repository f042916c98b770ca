"""Preprocessing: every supported kind of image ends as 28×28 float32 in the dataset's convention."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from harness.images import bmp_rle, gif_zeros, jpeg_gradient, png_chunk, png_zeros, with_size
from PIL import GifImagePlugin, Image, ImageFile, PngImagePlugin

from fashion_classifier.errors import EmptyImage, ImageError, UndecodableImage, UnsupportedImageType
from fashion_classifier.inference import decode_budget
from fashion_classifier.inference.preprocess import (
    _high_depth_converter,
    _reduce_tiles,
    prepare_image,
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
    with pytest.raises(UndecodableImage, match="decompression bomb"):
        prepare_image(bomb)


def test_pillow_pixel_limit_is_the_limit(monkeypatch, encode):
    data = encode(np.zeros((100, 100), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageError, match="decompression bomb"):
        prepare_image(data)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", EmptyImage),
        (b"hello, I am a text file\n", UnsupportedImageType),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", UnsupportedImageType),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, UndecodableImage),
        (b"GIF89a" + b"\xff" * 20, UndecodableImage),
        (b"BM" + b"\x00" * 10, UndecodableImage),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 30, UndecodableImage),
    ],
)
def test_bad_files_get_the_right_error(data, kind):
    """Each kind is answered with its status by the web layer (400, 415, 422: ``web.errors``)."""
    with pytest.raises(ImageError) as exc:
        prepare_image(data)
    assert type(exc.value) is kind


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_truncated_files_are_422(test_split, encode, fmt):
    x = np.asarray(Image.fromarray(test_split[0][0]).resize((200, 200)))
    data = encode(x, fmt)
    with pytest.raises(UndecodableImage):
        prepare_image(data[: len(data) // 2])


def test_format_is_sniffed_from_content_not_name():
    assert sniff_format(b"\x89PNG\r\n\x1a\nxxxx") == "PNG"
    assert sniff_format(b"\xff\xd8\xff\xe1") == "JPEG"
    assert sniff_format(b"GIF87a") == "GIF"
    assert sniff_format(b"BMxx") == "BMP"
    assert sniff_format(b"<svg") is None


def test_to_png_enlarges_the_model_input(test_split):
    pixels = dataset_float(test_split[0][0])
    png = to_png(pixels, scale=6)
    image = Image.open(io.BytesIO(png))
    assert image.size == (168, 168)
    assert np.array_equal(np.asarray(image)[::6, ::6], test_split[0][0])


# --- The decode budget (issue 21) -----------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding any pixel fails the test: refusals must come from the header."""

    def decode(self, *args, **kwargs):
        raise AssertionError(f"pixels of a {self.format} {self.mode} {self.size} image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)


def test_the_issue_image_is_refused_from_its_header(no_decoding):
    data = png_zeros(9400, 9400, "I;16")  # the issue's 9400×9400 16-bit zeros: 2.3 GB on dec2ef7
    assert len(data) < 200_000
    with pytest.raises(UndecodableImage, match="9400×9400 image decodes to 88,360,000 pixels") as exc:
        prepare_image(data)
    assert "the decode limit is 12,582,912 pixels" in str(exc.value)


def _jpeg_segments(count: int, progressive: bool = False, filler: bytes = b"\xff\xfe\x00\x02") -> bytes:
    """A small JPEG with ``count`` × ``filler`` (default: an empty comment) after its JFIF segment."""
    data = jpeg_gradient(64, 64, "L", progressive=progressive)
    return data[:20] + filler * count + data[20:]


def _gif_blocks(count: int) -> bytes:
    data = gif_zeros((8, 8))
    at = data.index(b"!\xf9")
    return data[:at] + b"!\xfe" + b"\x01a" * count + b"\x00" + data[at:]


def _png_chunks(count: int) -> bytes:
    data = png_zeros(8, 8, "L")
    return data[:33] + png_chunk(b"abCd", b"") * (count - 3) + data[33:]  # + IHDR, IDAT, IEND


OVER_BUDGET = {
    "4-byte mode over the byte limit": (
        lambda: png_zeros(3073, 3072, "RGBA"),
        r"3073×3072 image \(mode RGBA\) needs 37,761,024 bytes to decode beside its [\d,]+-byte file "
        r"\(counted 3×\); the decode limit is 37,748,736 bytes \(36 MiB\)",
    ),
    "16-bit over the pixel limit": (lambda: png_zeros(4097, 3072, "I;16"), "the decode limit is 12,582,912 pixels"),
    "palette with tRNS": (lambda: png_zeros(9400, 9400, "P", transparency=True), "decode limit is 12,582,912 pixels"),
    "interlaced over its pixel limit": (
        lambda: png_zeros(2049, 2048, "L", interlace=True),
        r"the decode limit is 4,194,304 pixels \(2048×2048\) per interlaced PNG",
    ),
    "APNG frames": (lambda: png_zeros(8, 8, "RGB", frames=1001), "1,001 frames exceeds the limit of 1,000 frames"),
    "GIF frames": (lambda: gif_zeros((8, 8), frames=1001), "more than 1,000 frames"),
    "GIF screen": (lambda: gif_zeros((9400, 9400), (3, 3, 1, 1)), "9400×9400 image decodes to"),
    "GIF frame beyond the screen": (lambda: gif_zeros((1, 1), (0, 0, 5000, 5000), data_pixels=1), "5000×5000 image"),
    "progressive JPEG": (
        lambda: with_size(jpeg_gradient(64, 64, "L", progressive=True), 6000, 4000),
        # 48,000,000 bytes of coefficients (1 component, 2 bytes per sample) + 750×500 drafted pixels
        r"6000×4000 image \(mode L, progressive or multi-scan JPEG\) needs 48,375,000 bytes",
    ),
    "progressive JPEG bytes": (
        lambda: _jpeg_segments(65, progressive=True, filler=b"\xff\xfe\xff\xff" + bytes(65533)),
        r"progressive \(or multi-scan\) JPEG of 4,\d{3},\d{3} bytes exceeds the limit of 4,194,304 bytes",
    ),
    "RLE BMP pixels": (lambda: bmp_rle(1025, 1024, eol_after=1), "limit of 1,048,576 pixels for RLE BMPs"),
    "RLE BMP bytes": (lambda: bmp_rle(1024, 300, run=1), "limit of 524,288 bytes for RLE BMPs"),
    "PNG chunks": (lambda: _png_chunks(20_001), "more than 20,000 chunks"),
    "GIF blocks": (lambda: _gif_blocks(131_073), "more than 131,072 data blocks"),
    "JPEG segments": (lambda: _jpeg_segments(1001), "more than 1,000 segments"),
    "JPEG junk": (lambda: _jpeg_segments(1, filler=bytes(65_537)), "more than 65,536 stray bytes"),
}


@pytest.mark.parametrize("case", OVER_BUDGET)
def test_over_budget_images_are_422_from_the_header(no_decoding, case):
    build, message = OVER_BUDGET[case]
    with pytest.raises(UndecodableImage, match=message):
        prepare_image(build())


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png_zeros(3050, 3050, "RGBA"), (3050, 3050)),  # 37,210,000 bytes + 3 × a 37 KB file
        (png_zeros(4096, 3072, "P", transparency=True), (4096, 3072)),  # exactly 12,582,912 pixels
        (bmp_rle(1024, 1024, rle4=True, eol_after=1), (1024, 1024)),
        (jpeg_gradient(8000, 6000, "L", quality=80), (8000, 6000)),  # drafted: decodes 1000×750
    ],
    ids=["RGBA-at-the-byte-limit", "P-tRNS-at-the-pixel-limit", "RLE4-limit", "JPEG-8000x6000"],
)
def test_images_at_the_limits_are_accepted(data, size):
    prepared = prepare_image(data)
    assert (prepared.width, prepared.height) == size
    check_model_input(prepared.pixels)


def test_pillow_text_chunks_are_capped():
    data = png_zeros(8, 8, "L")
    text = png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(bytes((1 << 20) - 8), 9))
    with pytest.raises(UndecodableImage, match="PNG text chunks inflate past the limit of 4,194,304 bytes"):
        prepare_image(data[:33] + text * 5 + data[33:])
    assert PngImagePlugin.MAX_TEXT_MEMORY == 4 * PngImagePlugin.MAX_TEXT_CHUNK


@pytest.mark.parametrize(
    ("data", "image_class"),
    [
        (gif_zeros((600, 400), frames=1000), GifImagePlugin.GifImageFile),
        (png_zeros(600, 400, "RGB", frames=1000), PngImagePlugin.PngImageFile),
    ],
    ids=["GIF", "APNG"],
)
def test_only_the_first_frame_of_an_animation_is_read(monkeypatch, data, image_class):
    frames: list[int] = []
    seek = image_class._seek

    def spy(self, frame, *args, **kwargs):
        frames.append(frame)
        return seek(self, frame, *args, **kwargs)

    monkeypatch.setattr(image_class, "_seek", spy)
    prepared = prepare_image(data)
    assert (prepared.width, prepared.height) == (600, 400)
    assert set(frames) <= {0}


def _random_image(mode: str, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(7)
    w, h = size
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode in ("P", "P-tRNS"):
        image = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").convert("P")
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        if mode == "P-tRNS":
            image.info["transparency"] = rng.integers(0, 256, 256, dtype=np.uint8).tobytes()
        return image
    bands = len(Image.getmodebands(mode) * "x")
    arr = rng.integers(0, 256, (h, w, bands) if bands > 1 else (h, w), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode) if mode == "1" else Image.frombytes(mode, size, arr.tobytes())


@pytest.mark.parametrize(
    ("mode", "convert"),
    [("L", None), ("1", "L"), ("P", "L"), ("RGB", "L"), ("CMYK", "L"), ("RGBA", "LA"), ("LA", "LA"), ("P-tRNS", "LA")],
)
@pytest.mark.parametrize("size", [(1500, 1100), (130, 9000), (9000, 130)])
def test_tiles_reduce_exactly_like_the_whole_image(mode, convert, size):
    image = _random_image(mode, size)
    factor = max(size) // 112
    whole = (image.convert(convert) if convert else image).reduce(factor)
    tiled = _reduce_tiles(image, (lambda tile: tile.convert(convert)) if convert else None, factor)
    assert tiled.mode == whole.mode and tiled.size == whole.size
    assert np.array_equal(np.asarray(tiled), np.asarray(whole))


def test_sixteen_bit_tiles_round_like_dec2ef7():
    image = _random_image("I;16", (1500, 1100))
    expected = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
    converted = _reduce_tiles(image, _high_depth_converter(image), 1)
    assert np.array_equal(np.asarray(converted), expected)


def test_a_4000x3000_progressive_photo_fits_the_budget():
    # 4:2:0 coefficients: 12 M + 2 × 3 M samples × 2 bytes = 36,283,500 bytes, + 500×375 decoded.
    prepared = prepare_image(jpeg_gradient(4000, 3000, "RGB", quality=90, progressive=True))
    assert (prepared.width, prepared.height) == (4000, 3000)
    assert decode_budget.MAX_DECODE_BYTES >= 36_283_500 + 500 * 375


def test_the_images_of_one_request_share_a_budget(no_decoding):
    budget = decode_budget.RequestBudget(pixels=5_000_000)
    data = png_zeros(2000, 2000, "L")  # 4,000,000 pixels
    with pytest.raises(ImageError, match="were decoded"):  # within budget: decoding starts (and fails here)
        prepare_image(data, budget)
    assert budget.left == 1_000_000
    with pytest.raises(
        UndecodableImage,
        match="may decode to 12,582,912 pixels in all; this one needs 4,000,000 and 1,000,000 are left",
    ):
        prepare_image(data, budget)
    assert budget.left == 1_000_000
