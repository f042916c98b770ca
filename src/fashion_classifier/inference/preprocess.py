"""Turn an uploaded image file (or a JSON pixel array) into the model's input.

The model takes float32 pixels of shape 28×28 in [0, 1] in the dataset's convention: a light
garment, centred, on a black background (Fashion-MNIST was made by inverting product photos
shot on white backgrounds). An upload goes through these steps:

1. **Format.** PNG, JPEG, GIF and BMP only, recognised by their magic bytes (never by the file
   name). Anything else is ``UnsupportedImageType``; a recognised file that Pillow cannot decode
   (corrupt, truncated) is ``UndecodableImage``; an empty file is ``EmptyImage``.
2. **Decompression bombs and the decode budget.** Images with more pixels than Pillow's
   ``Image.MAX_IMAGE_PIXELS`` (89.5 M) are refused (``UndecodableImage``) before any pixel is decoded, and
   so is any image over the decode budget (:mod:`.decode_budget`: decoded bytes, frames, and
   the chunks, blocks and markers Pillow parses in Python), with a message naming the limit.
3. **Decode cheaply.** JPEGs are decoded with Pillow's ``draft`` mode straight to grayscale at
   1/2–1/8 scale (a fraction of a full decode's cost); the EXIF orientation of
   JPEGs is applied (to the reduced image). Animated GIFs (and APNGs) use their first frame;
   no other frame is read. The decoded image is the only full-size buffer: conversion and
   reduction work on tiles of about 1 MB.
4. **Grayscale.** Palette, RGB, CMYK and 1-bit images are converted with ITU-R 601 luma;
   16-bit images (``I;16``) and 32-bit ones are scaled to 8 bits.
5. **Polarity.** With an alpha channel (RGBA, LA, palette or PNG ``tRNS`` transparency) the
   transparent area is the background: the garment is composited onto black, and inverted
   first when its opaque pixels are mostly dark (a dark product cut-out becomes a light
   garment, as in the dataset). Without alpha, a light background is detected when the mean
   of the 1-pixel border is above mid-gray and brighter than the centre; such photos are
   inverted. No Fashion-MNIST image meets that test (their border means stay below 93).
6. **Size.** An image that is already 28×28 is used as is, so dataset images saved as PNG
   round-trip to exactly the dataset's pixels. Any other size is reduced to working size,
   the background level is subtracted, the garment is cropped to its bounding box and fitted
   into 28×28 keeping its aspect ratio (longest side 28, bilinear with antialiasing), centred
   on black, like the dataset's own preparation.

Pixel arrays (``arrays``) skip all of that: they are tensors already.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from math import ceil

import numpy as np
from PIL import Image, UnidentifiedImageError

from fashion_classifier.errors import EmptyImage, UndecodableImage, UnsupportedImageType
from fashion_classifier.inference.arrays import SIZE
from fashion_classifier.inference.decode_budget import (
    OverBudget,
    RequestBudget,
    check_decode,
    check_structure,
    pillow_limit,
)

# Formats accepted, by magic bytes; the page and the API docs list the same extensions.
SUPPORTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP")
EXTENSIONS = ("png", "jpg", "jpeg", "gif", "bmp")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
# Large images are first reduced (box filter) to about this size: enough to find the garment.
_WORK_SIZE = 112
# Conversions and reductions of larger images work on tiles of about this many decoded bytes.
_TILE_BYTES = 1 << 20
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


@dataclass(frozen=True, slots=True)
class Prepared:
    pixels: np.ndarray  # float32 [28, 28] in [0, 1], dataset convention
    width: int  # of the uploaded image
    height: int
    format: str  # "PNG", "JPEG", "GIF" or "BMP"
    inverted: bool  # a light background was detected and the image inverted


def sniff_format(data: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    return None


def prepare_image(data: bytes, budget: RequestBudget | None = None) -> Prepared:
    """Decode one image file into the model's input; raises an ``errors.ImageError`` on bad input.

    ``budget`` is shared by the images of one request (a batch), which decode
    :data:`~.decode_budget.MAX_REQUEST_PIXELS` in all.
    """
    if not data:
        raise EmptyImage("empty file")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImageType("unsupported image type: send png, jpg, jpeg, gif or bmp")
    try:
        multi_scan = check_structure(data, fmt)
        im = Image.open(io.BytesIO(data), formats=(fmt,))
        width, height = im.size
        if width * height > Image.MAX_IMAGE_PIXELS:
            raise UndecodableImage(
                f"image of {width}×{height} pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS:,} "
                "(decompression bomb protection)"
            )
        orientation = None
        if fmt == "JPEG":
            value = im.getexif().get(_ORIENTATION_TAG, 1)
            orientation = _TRANSPOSE.get(value) if isinstance(value, int) else None
            im.draft("L", (2 * SIZE, 2 * SIZE))
        check_decode(im, fmt, (width, height), multi_scan, len(data), budget)
        gray, alpha = _to_gray(im, _conversion(im), orientation)
    except UndecodableImage:
        raise
    except OverBudget as exc:
        raise UndecodableImage(str(exc)) from None
    except Image.DecompressionBombError as exc:
        raise UndecodableImage(f"image exceeds Pillow's pixel limit (decompression bomb protection): {exc}") from None
    except UnidentifiedImageError:
        raise UndecodableImage(f"cannot decode the {fmt} image: corrupt or not an image") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on malformed input
        message = pillow_limit(exc) or f"cannot decode the {fmt} image: {exc or type(exc).__name__}"
        raise UndecodableImage(message) from None
    pixels, inverted = _normalise(gray, alpha)
    return Prepared(pixels, width, height, fmt, inverted)


def _conversion(im: Image.Image) -> str:
    """What ``im``'s tiles are converted to: "LA" with alpha, "L", "L16" from 16/32-bit, "" none."""
    mode = im.mode
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        return "LA"
    if mode.startswith("I;16") or mode in ("I", "F"):
        return "L16"
    return "" if mode == "L" else "L"


def _to_gray(
    im: Image.Image, target: str, orientation: Image.Transpose | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gray levels as float32 0..255 at working size, and alpha as float32 0..1 (or None).

    The decoded image is the only full-size buffer: larger images are converted and reduced
    tile by tile (tiles are whole multiples of the reduction factor, so the result is the
    same as reducing the whole image at once).
    """
    im.load()
    convert = _high_depth_converter(im) if target == "L16" else {"LA": _to_la, "L": _to_l}.get(target)
    longest = max(im.size)
    factor = max(1, longest // _WORK_SIZE) if longest > _WORK_SIZE else 1
    small = _reduce_tiles(im, convert, factor)
    if orientation is not None:
        small = small.transpose(orientation)
    if target == "LA":
        arr = np.asarray(small, dtype=np.float32)
        alpha = arr[..., 1] / 255.0
        if alpha.min() >= 1.0:  # fully opaque: treat like any other image
            return arr[..., 0], None
        return arr[..., 0], alpha
    return np.asarray(small, dtype=np.float32), None


def _to_la(tile: Image.Image) -> Image.Image:
    return tile.convert("LA")


def _to_l(tile: Image.Image) -> Image.Image:
    return tile.convert("L")


def _reduce_tiles(im: Image.Image, convert: Callable[[Image.Image], Image.Image] | None, factor: int) -> Image.Image:
    """``convert`` (L or LA) applied to ``im`` and box-reduced by ``factor``, one tile at a time."""
    w, h = im.size
    if w * h * 4 <= _TILE_BYTES:
        out = convert(im) if convert else im
        return out.reduce(factor) if factor > 1 else out
    # Tiles of whole factor×factor blocks, about _TILE_BYTES each (4 bytes per pixel once converted).
    blocks = max(1, _TILE_BYTES // (4 * factor * factor))
    cols = min(ceil(w / factor), blocks)
    rows = max(1, blocks // cols)
    tile_w, tile_h = cols * factor, rows * factor
    out = None
    for top in range(0, h, tile_h):
        for left in range(0, w, tile_w):
            tile = im.crop((left, top, min(w, left + tile_w), min(h, top + tile_h)))
            if convert:
                tile = convert(tile)
            small = tile.reduce(factor) if factor > 1 else tile
            if out is None:
                out = Image.new(small.mode, (ceil(w / factor), ceil(h / factor)))
            out.paste(small, (left // factor, top // factor))
    return out


def _high_depth_converter(im: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """A converter of ``im``'s tiles to 8-bit L, scaled like the whole image (16-bit: / 257;
    32-bit: F images up to 1.0 × 255, I and F images above 255 × 255/65535)."""
    if im.mode == "I;16":
        # Pillow's own transform (x / 257 + 0.5, truncated: x / 257 rounded), in C.
        return lambda tile: tile.point(lambda v: v / 257 + 0.5).convert("L")
    scale = 1 / 257
    if not im.mode.startswith("I;16"):  # I or F: the scale depends on the image's maximum
        peak = np.float32(np.nan)
        w, h = im.size
        rows = max(1, _TILE_BYTES // (4 * w))
        for top in range(0, h, rows):
            strip = np.asarray(im.crop((0, top, w, min(h, top + rows))))
            if strip.size:
                peak = np.fmax(peak, np.fmax.reduce(strip, axis=None))
        scale = 1.0
        if im.mode == "F" and peak <= 1.0:
            scale = 255.0
        elif peak > 255.0:
            scale = 255.0 / 65535.0

    def convert(tile: Image.Image) -> Image.Image:
        arr = np.asarray(tile, dtype=np.float32) * np.float32(scale)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")

    return convert


def _normalise(gray: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, bool]:
    inverted = False
    if alpha is not None:
        weight = float(alpha.sum())
        garment_mean = float((gray * alpha).sum() / weight) if weight > 0 else 0.0
        if garment_mean < 127.5:
            gray = 255.0 - gray
            inverted = True
        gray = gray * alpha
    elif _light_background(gray):
        gray = 255.0 - gray
        inverted = True
    if gray.shape != (SIZE, SIZE):
        gray = _fit(gray)
    # Divide (not multiply by 1/255) to match training's scaling bit for bit.
    return np.ascontiguousarray(gray, dtype=np.float32) / np.float32(255), inverted


def _light_background(gray: np.ndarray) -> bool:
    h, w = gray.shape
    if h < 4 or w < 4:
        return False
    border = (gray[0].sum() + gray[-1].sum() + gray[1:-1, 0].sum() + gray[1:-1, -1].sum()) / (2 * w + 2 * h - 4)
    centre = gray[h // 4 : h - h // 4, w // 4 : w - w // 4].mean()
    return bool(border > 127.5 and border > centre)


def _fit(gray: np.ndarray) -> np.ndarray:
    """Subtract the background, crop to the garment, fit into 28×28 keeping aspect, centre."""
    h, w = gray.shape
    border = np.concatenate((gray[0], gray[-1], gray[:, 0], gray[:, -1]))
    background = float(np.median(border))
    gray = np.clip(gray - background, 0.0, 255.0)
    peak = float(gray.max())
    if peak > 0:
        rows = np.flatnonzero((gray > 0.15 * peak).any(axis=1))
        cols = np.flatnonzero((gray > 0.15 * peak).any(axis=0))
        gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        h, w = gray.shape
    scale = SIZE / max(h, w)
    new_w, new_h = max(1, min(SIZE, round(w * scale))), max(1, min(SIZE, round(h * scale)))
    small = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32), mode="F").resize(
        (new_w, new_h), Image.Resampling.BILINEAR
    )
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - new_h) // 2, (SIZE - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(small, dtype=np.float32)
    return np.clip(canvas, 0.0, 255.0)


def to_png(pixels: np.ndarray, scale: int = 1) -> bytes:
    """The 28×28 model input as a PNG (optionally enlarged with nearest neighbour) for display."""
    im = Image.fromarray(np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8), mode="L")
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
