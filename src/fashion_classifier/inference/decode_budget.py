"""The decode budget: what one uploaded image may cost a worker, checked before any pixel is decoded.

Pillow's ``MAX_IMAGE_PIXELS`` bounds pixels, not bytes: a 171 KB PNG of 9400×9400 16-bit pixels
made a worker allocate 2.3 GB (issue 21). And Pillow walks PNG chunks, GIF blocks, JPEG markers
and RLE BMP runs in Python, ~0.1–2.5 µs each, so a 10 MB file of tiny ones costs seconds of CPU.
Each upload is therefore checked from its headers, twice:

1. :func:`check_structure` (the raw bytes): at most :data:`MAX_PNG_CHUNKS` PNG chunks,
   :data:`MAX_GIF_BLOCKS` GIF sub-blocks and :data:`MAX_FRAMES` GIF frames,
   :data:`MAX_JPEG_MARKERS` segments and :data:`MAX_JPEG_JUNK` stray bytes before a JPEG's
   first scan, :data:`MAX_PROGRESSIVE_JPEG_BYTES` of progressive JPEG, :data:`MAX_RLE_BYTES` of
   RLE BMP. The walks stop at the limit, so they cost ≤ ~10 ms.
2. :func:`check_decode` (the opened header, after JPEG's draft scaling): at most
   :data:`MAX_DECODE_PIXELS` pixels (the CPU bound; :data:`MAX_INTERLACED_PIXELS` for an
   interlaced PNG, which costs more per pixel), and width × height × the bytes per pixel
   of the mode Pillow decodes into (1 for 1/L/P, 2 for I;16, 4 for every other mode: Pillow
   stores RGB, LA and CMYK in 4 bytes), plus libjpeg's whole-image coefficient buffer
   (2 bytes per sample at full resolution) for progressive and multi-scan JPEGs, plus the file
   itself (held :data:`FILE_COPIES` times by the web layer meanwhile) within
   :data:`MAX_DECODE_BYTES`; at most :data:`MAX_FRAMES` APNG frames; RLE BMPs (decoded in pure
   Python) at most :data:`MAX_RLE_PIXELS` pixels. The images of one request (a batch) share
   one :class:`RequestBudget` of :data:`MAX_REQUEST_PIXELS`.

Only the first frame of an animation is ever decoded. Preprocessing keeps one full-size buffer
alive (the decoded image) and converts it in tiles, so a request's memory is about the number
counted here. Every refusal is :class:`OverBudget`, whose message names the limit; the web layer
answers 422 like any other unusable image (the body was not too large: the image it describes is).

Measured on a real gunicorn worker (tests/web/test_decode_budget.py, a loaded 2-core machine):
every accepted image at these limits raised the worker's peak RSS by ≤ 45 MB (≤ 50 MB for a
10 MB upload, most of it the request body) and cost ≤ ~160 ms of CPU, ≤ ~220 ms at a slow hour
of the VM (the worst: RGBA and 16-bit PNGs at the byte limit, interlaced Paeth-filtered ones at
theirs); refusals cost ≤ 20 ms.
"""

from __future__ import annotations

import re
import struct
from math import ceil

from PIL import Image, PngImagePlugin

# Bytes one image may hold while it decodes (a 3050×3050 RGBA PNG, or the coefficients of a
# 4000×3000 4:2:0 progressive JPEG): with the request's own memory, ≤ ~50 MB above a worker's
# resting RSS, under the 64 MB of issue 21.
MAX_DECODE_BYTES = 36 * 1024 * 1024
# The file itself is in memory several times while it decodes, so it counts against the same
# budget. Measured on gunicorn: a multipart upload holds ~3.7× the file (the request body, the
# part cut from it, allocator leftovers of the parse), a base64 one in JSON ~6× (the body and
# the parsed text are 4/3 of the file each, then the decoded file).
FILE_COPIES = 3
BASE64_FILE_COPIES = 5
# Pixels one image may decode to (4096×3072): the CPU bound. Decoding and converting cost up to
# ~12 ns per pixel (interlaced, Paeth-filtered, with transparency): ≤ ~160 ms of the 250 ms.
MAX_DECODE_PIXELS = 12 * 1024 * 1024
# An interlaced PNG costs more per pixel (Adam7's seven passes): 9.3 M RGBA pixels took 230-320 ms
# against 140-190 ms for the same image not interlaced, and 6.3 M still 160-220 ms (2026-12-07,
# this VM at a slow hour); a third of the pixels keeps it well inside the budget.
MAX_INTERLACED_PIXELS = MAX_DECODE_PIXELS // 3
# All the images of one request together (a batch): without it, 200 images at the per-image limits
# in one 10 MiB body would cost 200 times as much CPU.
MAX_REQUEST_PIXELS = MAX_DECODE_PIXELS
MAX_FRAMES = 1000  # GIF/APNG frames (only the first is decoded; GIF counts need a walk of the file)
MAX_PNG_CHUNKS = 20_000  # Pillow reads each in Python (~2.4 µs); libpng writes 8 KB IDAT chunks
MAX_GIF_BLOCKS = 131_072  # sub-blocks (≤ 255 bytes each); a 10 MiB GIF of full ones has ~41,000
MAX_JPEG_MARKERS = 1000  # segments before the first scan; real files have fewer than 40
MAX_JPEG_JUNK = 64 * 1024  # stray and fill bytes between them (Pillow reads those byte by byte)
# Progressive JPEGs: libjpeg decodes every scan's coefficients (~30 ns per byte of a noisy file).
MAX_PROGRESSIVE_JPEG_BYTES = 4 * 1024 * 1024
MAX_RLE_PIXELS = 1024 * 1024  # Pillow's RLE BMP decoder is Python (~90 ns per pixel at worst)
MAX_RLE_BYTES = 512 * 1024  # ... and ~120 ns per byte of runs
# zTXt/iTXt text is inflated into memory by Pillow while it parses (1 MiB per chunk); its default
# total of 64 MiB alone would exceed the budget.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * PngImagePlugin.MAX_TEXT_CHUNK

_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_TWO_BYTE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_FILL = re.compile(rb"\xff+")
_BMP_RLE = (1, 2)  # BI_RLE8, BI_RLE4


class OverBudget(ValueError):
    """The image would cost more than the decode budget allows; the message names the limit."""


class RequestBudget:
    """The pixels the images of one request may still decode (:data:`MAX_REQUEST_PIXELS` in all)."""

    def __init__(self, pixels: int = MAX_REQUEST_PIXELS, file_copies: int = FILE_COPIES) -> None:
        self.left = pixels
        self.file_copies = file_copies  # how many times each file is in memory while it decodes

    def spend(self, pixels: int) -> None:
        if pixels > self.left:
            raise OverBudget(
                f"the images of one request may decode to {MAX_REQUEST_PIXELS:,} pixels in all; this one "
                f"needs {pixels:,} and {self.left:,} are left (send fewer or smaller images per request)"
            )
        self.left -= pixels


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel of ``mode`` in Pillow's memory."""
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode in _TWO_BYTE_MODES else 4


def check_structure(data: bytes, fmt: str) -> bool:
    """Walk the file's chunks/blocks/markers within the limits; raise :class:`OverBudget`.

    Returns True for a JPEG that libjpeg decodes through a whole-image coefficient buffer
    (progressive, or a first scan without every component). Malformed files are left to Pillow.
    """
    if fmt == "PNG":
        _check_png(data)
    elif fmt == "GIF":
        _check_gif(data)
    elif fmt == "JPEG":
        multi_scan = _jpeg_multi_scan(data)
        if multi_scan and len(data) > MAX_PROGRESSIVE_JPEG_BYTES:
            raise OverBudget(
                f"progressive (or multi-scan) JPEG of {len(data):,} bytes exceeds the limit of "
                f"{MAX_PROGRESSIVE_JPEG_BYTES:,} bytes for such JPEGs (send a baseline JPEG)"
            )
        return multi_scan
    elif fmt == "BMP" and _bmp_rle(data) and len(data) > MAX_RLE_BYTES:
        raise OverBudget(
            f"RLE-compressed BMP of {len(data):,} bytes exceeds the limit of {MAX_RLE_BYTES:,} "
            "bytes for RLE BMPs (send PNG)"
        )
    return False


def check_decode(
    im: Image.Image,
    fmt: str,
    size: tuple[int, int],
    multi_scan: bool = False,
    file_bytes: int = 0,
    request: RequestBudget | None = None,
) -> None:
    """Refuse ``im`` (opened, not loaded; a JPEG after ``draft``) if decoding would exceed the budget.

    ``size`` is the image's size in its header (a drafted JPEG decodes smaller); ``file_bytes``
    the size of the file, counted ``request.file_copies`` (default :data:`FILE_COPIES`) times;
    ``request`` what is left of the request's budget (spent here when the image passes).
    """
    width, height = im.size
    if width * height > MAX_DECODE_PIXELS:
        raise OverBudget(
            f"{size[0]}×{size[1]} image decodes to {width * height:,} pixels; the decode limit is "
            f"{MAX_DECODE_PIXELS:,} pixels (4096×3072) per image"
        )
    if fmt == "PNG" and im.info.get("interlace") and width * height > MAX_INTERLACED_PIXELS:
        raise OverBudget(
            f"interlaced {size[0]}×{size[1]} PNG decodes to {width * height:,} pixels; the decode limit is "
            f"{MAX_INTERLACED_PIXELS:,} pixels (2048×2048) per interlaced PNG (send it not interlaced)"
        )
    need = width * height * pixel_bytes(im.mode)
    what = f"{size[0]}×{size[1]} image (mode {im.mode}"
    if fmt == "JPEG" and multi_scan:
        need += _jpeg_coefficient_bytes(im, size)
        what += ", progressive or multi-scan JPEG"
    copies = request.file_copies if request is not None else FILE_COPIES
    held = copies * file_bytes
    if need + held > MAX_DECODE_BYTES:
        beside = f" beside its {file_bytes:,}-byte file (counted {copies}×)" if held else ""
        raise OverBudget(
            f"{what}) needs {need:,} bytes to decode{beside}; the decode limit is {MAX_DECODE_BYTES:,} "
            f"bytes ({MAX_DECODE_BYTES / 2**20:g} MiB) per image"
        )
    if fmt == "PNG" and im.n_frames > MAX_FRAMES:  # APNG: declared in acTL (a GIF is counted by walking it)
        raise OverBudget(f"animated PNG with {im.n_frames:,} frames exceeds the limit of {MAX_FRAMES:,} frames")
    if fmt == "BMP" and im.info.get("compression") in _BMP_RLE and width * height > MAX_RLE_PIXELS:
        raise OverBudget(
            f"RLE-compressed BMP of {width}×{height} pixels exceeds the limit of {MAX_RLE_PIXELS:,} "
            "pixels for RLE BMPs (send PNG)"
        )
    if request is not None:
        request.spend(width * height)


def _bmp_rle(data: bytes) -> bool:
    """BITMAPINFOHEADER (or later) with RLE8/RLE4 compression."""
    if len(data) < 34 or struct.unpack_from("<I", data, 14)[0] < 40:
        return False
    return struct.unpack_from("<I", data, 30)[0] in _BMP_RLE


def pillow_limit(exc: Exception) -> str | None:
    """The message for a limit Pillow enforces itself while parsing (PNG text), or None."""
    if "MAX_TEXT_MEMORY" in str(exc) or "MAX_TEXT_CHUNK" in str(exc):
        return (
            f"PNG text chunks inflate past the limit of {PngImagePlugin.MAX_TEXT_MEMORY:,} bytes in all "
            f"({PngImagePlugin.MAX_TEXT_CHUNK:,} per chunk)"
        )
    return None


def _check_png(data: bytes) -> None:
    pos, count, end = 8, 0, len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise OverBudget(f"PNG with more than {MAX_PNG_CHUNKS:,} chunks exceeds the limit of chunks per file")
        if kind == b"IEND":
            return
        pos += 12 + length


def _check_gif(data: bytes) -> None:
    if len(data) < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = blocks = 0
    end = len(data)
    while pos < end:
        kind = data[pos]
        if kind == 0x21:  # extension: label, then sub-blocks
            pos += 2
        elif kind == 0x2C:  # image descriptor, local colour table, LZW code size, sub-blocks
            frames += 1
            if frames > MAX_FRAMES:
                raise OverBudget(f"animated GIF with more than {MAX_FRAMES:,} frames exceeds the limit of frames")
            if pos + 10 > end:
                return
            flags = data[pos + 9]
            pos += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        else:  # trailer, or junk that Pillow will refuse
            return
        while pos < end:
            size = data[pos]
            pos += size + 1
            if not size:
                break
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise OverBudget(f"GIF with more than {MAX_GIF_BLOCKS:,} data blocks exceeds the limit of blocks")


def _jpeg_multi_scan(data: bytes) -> bool:
    pos, markers, junk, end = 2, 0, 0, len(data)
    progressive, components = False, 0
    while pos < end:
        if data[pos] != 0xFF:
            nxt = data.find(b"\xff", pos)
            if nxt < 0:
                return False
            junk += nxt - pos
            pos = nxt
        fill = _FILL.match(data, pos)
        junk += fill.end() - pos - 1
        if junk > MAX_JPEG_JUNK:
            raise OverBudget(f"JPEG with more than {MAX_JPEG_JUNK:,} stray bytes between markers exceeds the limit")
        pos = fill.end()
        if pos >= end:
            return False
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9 or pos + 2 > end:
            return False
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise OverBudget(f"JPEG with more than {MAX_JPEG_MARKERS:,} segments before its first scan: over the limit")
        if marker in _JPEG_SOF and pos + 8 <= end:
            progressive = marker in _JPEG_PROGRESSIVE
            components = data[pos + 7]
        elif marker == 0xDA and pos + 3 <= end:
            return progressive or data[pos + 2] < components
        pos += struct.unpack_from(">H", data, pos)[0]
    return False


def _jpeg_coefficient_bytes(im: Image.Image, size: tuple[int, int]) -> int:
    """libjpeg's whole-image coefficient buffer: 64 × 2 bytes per 8×8 block of every component."""
    layers = getattr(im, "layer", None) or [("", 1, 1, 0)] * len(im.getbands())
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    mcus = ceil(size[0] / (8 * h_max)) * ceil(size[1] / (8 * v_max))
    return sum(mcus * h * v * 128 for _, h, v, _ in layers)
