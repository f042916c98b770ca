"""Upload files for the tests: real Fashion-MNIST test images (PNG/JPEG bytes and arrays), and
large or hostile images built from their headers up (the decode budget, issue 21)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_classifier.data import IMAGE_MAGIC, LABEL_MAGIC, read_idx


@lru_cache(maxsize=2)
def load_test_split(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official test images (uint8 [10000, 28, 28]) and labels (uint8 [10000])."""
    data_dir = Path(data_dir)
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", IMAGE_MAGIC)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", LABEL_MAGIC)
    return images, labels


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    """An image, or a uint8 array (grayscale [H, W] or RGB [H, W, 3]), as a file in ``fmt`` (PNG, JPEG, ...)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_args)
    return buf.getvalue()


def photo_like(pixels: np.ndarray, size: tuple[int, int] = (600, 800), quality: int = 85) -> bytes:
    """A ``size`` (w, h) RGB JPEG of a test image, scaled up with light noise like a camera photo."""
    rng = np.random.default_rng(0)
    big = Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").resize(size, Image.BILINEAR)
    rgb = np.stack([np.asarray(big, dtype=np.int16)] * 3, axis=-1)
    rgb += rng.integers(-6, 7, size=rgb.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# --- Hostile and large images, built without holding their pixels (issue 21) --------------------
# Each builder writes the file format by hand (or patches a small Pillow file), so a 9400×9400
# 16-bit PNG costs the test ~0.2 s and ~170 KB, not the 177 MB its pixels would take.

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type, bit depth, samples per pixel for the PNG kinds the builders write
PNG_KINDS = {
    "1": (0, 1, 1),
    "L": (0, 8, 1),
    "I;16": (0, 16, 1),
    "P": (3, 8, 1),
    "LA": (4, 8, 2),
    "LA;16": (4, 16, 2),
    "RGB": (2, 8, 3),
    "RGB;16": (2, 16, 3),
    "RGBA": (6, 8, 4),
    "RGBA;16": (6, 16, 4),
}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _zero_scanlines(width: int, height: int, bits_per_pixel: int, interlace: bool, filter_type: int = 0) -> bytes:
    """zlib stream of all-zero scanlines (a filter byte + zero pixels).

    Rows are identical, so ~1 MB of them is compressed once (ending in a full flush, which makes
    the deflate blocks independent of what precedes them) and repeated: a 353 MB image costs
    milliseconds, not the ~1.5 s zlib would take. The checksum is computed over the real data.
    """
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    out, adler = [b"\x78\xda"], 1
    for x0, y0, dx, dy in passes:
        cols, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if cols <= 0 or rows <= 0:
            continue
        row = bytes((filter_type,)) + bytes((cols * bits_per_pixel + 7) // 8)
        per_block = max(1, (1 << 20) // len(row))
        full, rest = divmod(rows, per_block)
        for n, times in ((per_block, full), (rest, 1 if rest else 0)):
            if not times:
                continue
            block = row * n
            comp = zlib.compressobj(9, zlib.DEFLATED, -15)
            deflated = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
            out.append(deflated * times)
            for _ in range(times):
                adler = zlib.adler32(block, adler)
    out.append(b"\x03\x00" + struct.pack(">I", adler))  # an empty final block, the checksum
    return b"".join(out)


def png_zeros(
    width: int,
    height: int,
    kind: str = "L",
    *,
    interlace: bool = False,
    transparency: bool = False,
    frames: int = 1,
    filter_type: int = 0,
) -> bytes:
    """An all-zero PNG of ``kind`` (see PNG_KINDS); ``frames`` > 1 makes an APNG whose other
    frames are 1×1 (the first frame is the default image, so it is full size). Every row uses
    ``filter_type`` (4, Paeth, is the slowest to undo)."""
    color_type, depth, samples = PNG_KINDS[kind]
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, int(interlace))
    parts = [_PNG_SIGNATURE, png_chunk(b"IHDR", header)]
    if color_type == 3:
        parts.append(png_chunk(b"PLTE", bytes(range(256)) * 3))
        if transparency:
            parts.append(png_chunk(b"tRNS", b"\x00" + b"\xff" * 255))
    elif transparency and color_type in (0, 2):
        parts.append(png_chunk(b"tRNS", bytes(2 * (1 if color_type == 0 else 3))))
    seq = 0
    if frames > 1:
        parts.append(png_chunk(b"acTL", struct.pack(">II", frames, 0)))
        parts.append(png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, width, height, 0, 0, 1, 100, 0, 0)))
        seq += 1
    parts.append(png_chunk(b"IDAT", _zero_scanlines(width, height, depth * samples, interlace, filter_type)))
    if frames > 1:
        tiny = _zero_scanlines(1, 1, depth * samples, False)
        for _ in range(frames - 1):
            parts.append(png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, 1, 1, 0, 0, 1, 100, 0, 0)))
            parts.append(png_chunk(b"fdAT", struct.pack(">I", seq + 1) + tiny))
            seq += 2
    parts.append(png_chunk(b"IEND", b""))
    return b"".join(parts)


def png_noisy_rgba(side: int, noise_per_row: int, seed: int = 0) -> bytes:
    """A ``side``×``side`` RGBA PNG whose rows start with ``noise_per_row`` random bytes (zeros
    after): about that many incompressible bytes per row, e.g. a 10 MB file that decodes to 36 MiB."""
    rng = np.random.default_rng(seed)
    comp = zlib.compressobj(1)
    zeros = bytes(4 * side - noise_per_row)
    idat = b"".join(comp.compress(b"\x00" + rng.bytes(noise_per_row) + zeros) for _ in range(side)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    return _PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


class _BitWriter:
    def __init__(self) -> None:
        self.value, self.bits, self.out = 0, 0, bytearray()

    def write(self, code: int, width: int) -> None:
        self.value |= code << self.bits
        self.bits += width
        while self.bits >= 8:
            self.out.append(self.value & 0xFF)
            self.value >>= 8
            self.bits -= 8

    def flush(self) -> bytes:
        if self.bits:
            self.out.append(self.value & 0xFF)
        return bytes(self.out)


def _lzw_zeros(pixels: int) -> bytes:
    """GIF LZW data (minimum code size 8, 9-bit codes only) for ``pixels`` pixels of index 0.

    After each clear code it sends runs of 1, 2, 3, ... zeros (the table entries 258, 259, ...
    that a constant stream builds) and clears again before the codes would need 10 bits.
    """
    clear, end, width = 256, 257, 9
    bits = _BitWriter()
    remaining = pixels
    while remaining:
        bits.write(clear, width)
        bits.write(0, width)  # a literal: one pixel
        remaining -= 1
        run = 2
        while remaining and run <= 240:
            take = min(run, remaining)
            bits.write(0 if take == 1 else 256 + take, width)  # code 258 = "00", 259 = "000", ...
            remaining -= take
            run += 1
    bits.write(end, width)
    data = bits.flush()
    blocks = b"".join(bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255))
    return b"\x08" + blocks + b"\x00"


def gif_zeros(
    screen: tuple[int, int],
    frame: tuple[int, int, int, int] | None = None,
    *,
    frames: int = 1,
    transparency: bool = False,
    data_pixels: int | None = None,
) -> bytes:
    """A GIF89a with a ``screen`` (w, h) logical screen and ``frames`` frames of index 0.

    ``frame`` (left, top, w, h) is the first frame's box (default: the whole screen); the
    other frames are 1×1. The 256-colour palette is not gray, so Pillow opens it as "P".
    ``data_pixels`` (default: the whole first frame) is how many pixels its LZW data holds.
    """
    sw, sh = screen
    left, top, fw, fh = frame or (0, 0, sw, sh)
    palette = bytes(b for i in range(256) for b in (i, 255 - i, i // 2))
    parts = [b"GIF89a", struct.pack("<HHBBB", sw, sh, 0xF7, 0, 0), palette]
    if frames > 1:
        parts.append(b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")
    gce = b"!\xf9\x04" + (b"\x05" if transparency else b"\x04") + b"\x0a\x00\x00\x00"
    tiny = _lzw_zeros(1)
    for i in range(frames):
        first = _lzw_zeros(fw * fh if data_pixels is None else data_pixels) if i == 0 else tiny
        box, data = ((left, top, fw, fh), first) if i == 0 else ((0, 0, 1, 1), tiny)
        parts.append(gce + b"," + struct.pack("<HHHHB", *box, 0) + data)
    parts.append(b";")
    return b"".join(parts)


def bmp_rle(width: int, height: int, *, rle4: bool = False, run: int = 255, eol_after: int | None = None) -> bytes:
    """An RLE8 (or RLE4) BMP: each row is runs of ``run`` pixels of colour 1 (the last one
    shorter), or, with ``eol_after``, one run of that many pixels then an end-of-line code."""
    colors = 16 if rle4 else 256
    ops = bytearray()
    for _ in range(height):
        if eol_after is not None:
            ops += bytes((eol_after, 0x11 if rle4 else 1))
        else:
            left = width
            while left:
                n = min(run, left)
                ops += bytes((n, 0x11 if rle4 else 1))
                left -= n
        ops += b"\x00\x00"
    ops += b"\x00\x01"
    palette = b"".join(bytes((i, 255 - i, i // 2, 0)) for i in range(0, 256, 256 // colors))  # BGRX, not gray
    offset = 14 + 40 + len(palette)
    bits, compression = (4, 2) if rle4 else (8, 1)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(ops), 2835, 2835, colors, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(ops), 0, 0, offset) + info + palette + bytes(ops)


def with_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF) claims ``width``×``height``: scans for fewer pixels."""
    pos = 2
    while pos < len(data):
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]
        pos += 2 + length
    raise ValueError("no SOF marker")


def jpeg_gradient(width: int, height: int, mode: str = "RGB", **save_args: object) -> bytes:
    """A ``mode`` (L, RGB or CMYK) JPEG of a smooth gradient (small on disk)."""
    ramp = Image.linear_gradient("L").resize((width, height), Image.Resampling.NEAREST)
    image = ramp if mode == "L" else Image.merge(mode, [ramp] * len(mode))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", **save_args)
    return buf.getvalue()


def _padded_jpeg(data: bytes, size: int) -> bytes:
    """``data`` (a JPEG) with COM segments after SOI until it is at least ``size`` bytes long."""
    filler = b"\xff\xfe" + struct.pack(">H", 65535) + bytes(65533)
    count = max(0, -(-(size - len(data)) // len(filler)))
    return data[:2] + filler * count + data[2:]


_BIG = 9400  # the 9400×9400: 88 M pixels, under Pillow's 89.5 M pixel limit
_W, _H = 4096, 3072  # the decode budget's pixel limit
_IW, _IH = 2048, 2048  # ... for interlaced PNGs
_SIDE = 3050  # 4-byte modes: its byte limit (37,748,736 bytes, less 3× the file)
_HUGE = f"{_BIG}×{_BIG}"


def _small_png() -> bytes:
    return png_zeros(64, 64, "L")


# Every kind of upload the decode budget covers: name -> (builder, None if accepted, else a part of
# the 422 message). Accepted ones sit just inside the limits of ``inference.decode_budget``
# (12 Mi pixels, 36 MiB decoded); refused ones are hostile (issue 21). All are small on disk and
# built in ~2 s in all without ever holding a full-size image (the JPEGs hold ≤ 64 MB a moment).
DECODE_BUDGET_CASES: dict[str, tuple[Callable[[], bytes], str | None]] = {
    "png-1": (lambda: png_zeros(_W, _H, "1"), None),
    "png-1-huge": (lambda: png_zeros(_BIG, _BIG, "1"), _HUGE),
    "png-L": (lambda: png_zeros(_W, _H, "L"), None),
    "png-L-huge": (lambda: png_zeros(_BIG, _BIG, "L"), _HUGE),
    "png-L-tRNS-interlaced-paeth": (
        lambda: png_zeros(_IW, _IH, "L", transparency=True, interlace=True, filter_type=4),
        None,
    ),
    "png-P": (lambda: png_zeros(_W, _H, "P"), None),
    "png-P-tRNS": (lambda: png_zeros(_W, _H, "P", transparency=True), None),
    "png-P-tRNS-huge": (lambda: png_zeros(_BIG, _BIG, "P", transparency=True), _HUGE),
    "png-LA": (lambda: png_zeros(_SIDE, _SIDE, "LA"), None),
    "png-LA-huge": (lambda: png_zeros(_BIG, _BIG, "LA"), _HUGE),
    "png-LA-16bit": (lambda: png_zeros(_SIDE, _SIDE, "LA;16"), None),
    "png-I16": (lambda: png_zeros(_W, _H, "I;16"), None),
    "png-I16-issue": (lambda: png_zeros(_BIG, _BIG, "I;16"), _HUGE),  # 2.3 GB and 5-10 s on dec2ef7
    "png-RGB": (lambda: png_zeros(_SIDE, _SIDE, "RGB"), None),
    "png-RGB-huge": (lambda: png_zeros(_BIG, _BIG, "RGB"), _HUGE),
    "png-RGB-16bit": (lambda: png_zeros(_SIDE, _SIDE, "RGB;16"), None),
    "png-RGBA": (lambda: png_zeros(_SIDE, _SIDE, "RGBA"), None),
    # Large files: their memory counts against the budget too (the web layer holds ~3 copies).
    "png-RGBA-9MB": (lambda: png_noisy_rgba(1500, 5990), None),
    "png-RGBA-10MB-3050": (lambda: png_noisy_rgba(_SIDE, 3300), "beside its 10,"),
    "png-RGBA-huge": (lambda: png_zeros(_BIG, _BIG, "RGBA"), _HUGE),  # ~1 GB on dec2ef7
    "png-RGBA-interlaced-paeth": (lambda: png_zeros(_IW, _IH, "RGBA", interlace=True, filter_type=4), None),
    "png-RGBA-interlaced-over": (lambda: png_zeros(_IW, _IH + 1, "RGBA", interlace=True), "per interlaced PNG"),
    "png-RGBA-interlaced-huge": (lambda: png_zeros(_BIG, _BIG, "RGBA", interlace=True), _HUGE),
    "apng-1000-frames": (lambda: png_zeros(_SIDE, _SIDE, "RGB", frames=1000), None),
    "apng-5000-frames": (lambda: png_zeros(64, 64, "RGB", frames=5000), "limit of 1,000 frames"),
    "png-200k-chunks": (
        lambda: _small_png()[:33] + png_chunk(b"abCd", b"") * 200_000 + _small_png()[33:],
        "limit of chunks",
    ),
    "png-zTXt-64MiB": (
        lambda: (
            _small_png()[:33]
            + png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(bytes((1 << 20) - 1), 9)) * 64
            + _small_png()[33:]
        ),
        "PNG text chunks inflate past the limit",
    ),
    "gif-P": (lambda: gif_zeros((_W, _H)), None),
    "gif-1000-frames": (lambda: gif_zeros((_W, _H), frames=1000), None),
    "gif-5000-frames": (lambda: gif_zeros((64, 64), frames=5000), "limit of frames"),
    "gif-screen-larger-than-frame": (lambda: gif_zeros((_W, _H), (7, 9, 1, 1), transparency=True), None),
    "gif-screen-huge-frame-1x1": (lambda: gif_zeros((_BIG, _BIG), (7, 9, 1, 1), transparency=True), _HUGE),
    "gif-frame-larger-than-screen": (lambda: gif_zeros((1, 1), (0, 0, _BIG, _BIG), data_pixels=1), _HUGE),
    "gif-1M-comment-blocks": (lambda: _gif_with_comment_blocks(gif_zeros((64, 64)), 1_000_000), "limit of blocks"),
    "jpeg-RGB-4000x3000": (lambda: jpeg_gradient(4000, 3000, "RGB", quality=90), None),
    "jpeg-L-8000x8000": (lambda: jpeg_gradient(8000, 8000, "L", quality=90), None),
    "jpeg-CMYK-4000x3000": (lambda: jpeg_gradient(4000, 3000, "CMYK", quality=90), None),
    "jpeg-progressive-4000x3000": (lambda: jpeg_gradient(4000, 3000, "RGB", quality=90, progressive=True), None),
    "jpeg-10MB-of-comments": (lambda: _padded_jpeg(jpeg_gradient(4000, 3000, "RGB", quality=90), 10_400_000), None),
    "png-10MB-of-empty-chunks": (lambda: png_zeros(8, 8, "L")[:33] + bytes(10_400_000), "limit of chunks"),
    "jpeg-progressive-claims-9400": (
        lambda: with_size(jpeg_gradient(64, 64, "L", quality=90, progressive=True), _BIG, _BIG),
        _HUGE,
    ),
    "jpeg-progressive-CMYK-claims-4000x3000": (
        lambda: with_size(jpeg_gradient(64, 64, "CMYK", quality=90, progressive=True), 4000, 3000),
        "4000×3000",
    ),
    "jpeg-progressive-5MiB": (
        lambda: _padded_jpeg(jpeg_gradient(64, 64, "L", quality=90, progressive=True), 5 << 20),
        "limit of 4,194,304 bytes",
    ),
    "jpeg-200k-markers": (
        lambda: _jpeg_after_app0(jpeg_gradient(64, 64, "L"), b"\xff\xfe\x00\x02" * 200_000),
        "segments before its first scan",
    ),
    "jpeg-1MB-junk": (lambda: _jpeg_after_app0(jpeg_gradient(64, 64, "L"), bytes(1 << 20)), "stray bytes"),
    "bmp-RLE8-1024": (lambda: bmp_rle(1024, 1024), None),
    "bmp-RLE4-1024-eol": (lambda: bmp_rle(1024, 1024, rle4=True, eol_after=1), None),
    "bmp-RLE8-huge-eol": (lambda: bmp_rle(_BIG, _BIG, eol_after=1), _HUGE),
    "bmp-RLE8-1-pixel-runs": (lambda: bmp_rle(1024, 1024, run=1), "for RLE BMPs"),
}


def _jpeg_after_app0(data: bytes, extra: bytes) -> bytes:
    """``extra`` inserted after the JFIF segment that Pillow writes first (SOI, APP0 of 18 bytes)."""
    assert data[2:4] == b"\xff\xe0"
    end = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:end] + extra + data[end:]


def _gif_with_comment_blocks(data: bytes, blocks: int) -> bytes:
    """``data`` (a GIF) with a comment extension of ``blocks`` one-byte sub-blocks before its frame."""
    at = data.index(b"!\xf9")
    return data[:at] + b"!\xfe" + b"\x01a" * blocks + b"\x00" + data[at:]
