"""Hostile and valid images for the fuzz suite, built in memory at test time (never saved).

Each image is named (the name is what a failure report shows, so it can be rebuilt) and
says whether it should reach the face detector: decoding and detection cost up to seconds
per image, everything else is rejected in milliseconds, so the fuzz plan budgets by it.
``expected`` names the errors a hostile image may get; empty means any 2xx or 4xx will do.
The valid side (real face photos at a few scales, in every encoding the server accepts)
is derived from the shared photos in memory, never written to the repository.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.photos import encode, lfw_photo

TOO_LARGE = frozenset({"ImageTooLargeException"})
NOT_AN_IMAGE = frozenset({"InvalidImageFormatException"})
INVALID = frozenset({"InvalidParameterException"})
"""Rekognition answers InvalidParameterException for an image under the 80-pixel minimum."""

BOMB_PIXELS = 40_000_000
"""The server's decompression-bomb limit (``facegate.engine.image.MAX_PIXELS``), 40 MP."""

STRIP_LENGTHS = (80, 800, 8_000, 80_000)
"""Strips 80 px wide: from square to 1:1000, in both orientations."""


@dataclass(frozen=True)
class CorpusImage:
    name: str
    data: bytes
    reaches_detector: bool
    """True when the bytes decode to an image the detector must scan (the expensive kind)."""
    expected: frozenset[str] = frozenset()


def face_photo(faces_dir: Path, name: str = "Colin_Powell", number: int = 1) -> Image.Image:
    with Image.open(lfw_photo(faces_dir, name, number)) as image:
        return image.convert("RGB")


def valid_faces(faces_dir: Path) -> list[CorpusImage]:
    """A real face photo at a few scales (the 'valid' side: detection and embedding run)."""
    face = face_photo(faces_dir)
    images = []
    for scale in (0.5, 1.0, 2.5, 5.0):
        size = (round(face.width * scale), round(face.height * scale))
        images.append(CorpusImage(f"face-jpeg-x{scale}", encode(face.resize(size, Image.Resampling.BICUBIC), "JPEG", quality=90), True))
    return images


def hostile_images(faces_dir: Path, seed: int, flips: int) -> list[CorpusImage]:
    """Every hostile image the issue lists, and ``flips`` randomly damaged copies of the
    JPEG and of the PNG photo; deterministic for ``seed``."""
    rng = random.Random(seed)
    face = face_photo(faces_dir)
    jpeg, png = encode(face, "JPEG", quality=90), encode(face, "PNG")
    return [
        *_not_images(rng),
        *_truncated(jpeg, png),
        *_bombs(),
        *_tiny(),
        *_strips(),
        *_modes(face),
        *_orientations(face),
        *_other_formats(face, rng),
        *_metadata(face, rng),
        *_bit_flips(jpeg, png, rng, flips),
    ]


def _bit_flips(jpeg: bytes, png: bytes, rng: random.Random, count: int) -> list[CorpusImage]:
    """``count`` copies of each photo with a few random bytes past the magic number overwritten.

    Whether one decodes is up to the codec, so each is counted as reaching the detector.
    """
    images = []
    for fmt, data in (("jpeg", jpeg), ("png", png)):
        for i in range(count):
            mutable = bytearray(data)
            for _ in range(rng.randint(1, 12)):
                mutable[rng.randrange(8, len(mutable))] = rng.randrange(256)
            images.append(CorpusImage(f"bitflip-{fmt}-{rng.getrandbits(32):08x}-{i}", bytes(mutable), True))
    return images


def _not_images(rng: random.Random) -> list[CorpusImage]:
    def noise(size: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(size))

    return [
        CorpusImage("zero-bytes", b"", False, INVALID),
        CorpusImage("one-nul-byte", b"\x00", False, NOT_AN_IMAGE),
        CorpusImage("random-100-bytes", noise(100), False, NOT_AN_IMAGE),
        CorpusImage("random-64k-bytes", noise(65536), False, NOT_AN_IMAGE),
        CorpusImage("jpeg-magic-then-garbage", b"\xff\xd8\xff" + noise(5000), False),
        CorpusImage("jpeg-magic-only", b"\xff\xd8\xff", False),
        CorpusImage("jpeg-soi-eoi", b"\xff\xd8\xff\xd9", False),
        CorpusImage("png-magic-then-garbage", b"\x89PNG\r\n\x1a\n" + noise(5000), False),
        CorpusImage("png-magic-only", b"\x89PNG\r\n\x1a\n", False),
        CorpusImage("png-ihdr-then-bad-zlib", _png(200, 200, 8, 2, b"\x78\x9c" + noise(3000)), False),
        CorpusImage("text-that-is-not-an-image", b"<svg xmlns='http://www.w3.org/2000/svg'/>", False, NOT_AN_IMAGE),
    ]


def _truncated(jpeg: bytes, png: bytes) -> list[CorpusImage]:
    images = []
    for fmt, data in (("jpeg", jpeg), ("png", png)):
        for fraction in (0.02, 0.3, 0.9):
            cut = max(12, int(len(data) * fraction))
            images.append(CorpusImage(f"truncated-{fmt}-{int(fraction * 100)}pct", data[:cut], False))
        images.append(CorpusImage(f"truncated-{fmt}-minus-1-byte", data[:-1], fmt == "png"))
    return images


def _bombs() -> list[CorpusImage]:
    """Headers that declare far more pixels than the bytes carry, and real images just under
    and over the 40 MP limit that compress to a few hundred kilobytes."""
    under = 6_324  # 6324 x 6324 = 39.99 MP
    over = 6_325  # 40.01 MP
    assert under * under < BOMB_PIXELS < over * over
    return [
        CorpusImage("png-header-60000x60000", _png(60_000, 60_000, 8, 2, zlib.compress(b"\x00" * 1000)), False, TOO_LARGE),
        CorpusImage("png-header-1x4000000000", _png(1, 4_000_000_000, 8, 0, zlib.compress(b"\x00" * 1000)), False),
        CorpusImage("png-header-65535x65535-16bit-rgba", _png(65_535, 65_535, 16, 6, zlib.compress(b"\x00" * 1000)), False, TOO_LARGE),
        CorpusImage("jpeg-header-65500x65500", _jpeg_with_size(65_500, 65_500), False, TOO_LARGE),
        CorpusImage("jpeg-header-0x0", _jpeg_with_size(0, 0), False),
        CorpusImage(f"png-grey-{under}x{under}-just-under-40mp", encode(Image.new("L", (under, under), 128), "PNG", optimize=False), True),
        CorpusImage(f"png-grey-{over}x{over}-just-over-40mp", encode(Image.new("L", (over, over), 128), "PNG", optimize=False), False, TOO_LARGE),
    ]


def under_minimum() -> CorpusImage:
    """A valid PNG one pixel under the 80-pixel minimum: refused right after decoding its
    header, so a request carrying it passes validation yet costs the server no detection."""
    return CorpusImage("png-79x79", encode(Image.new("RGB", (79, 79), (200, 150, 120)), "PNG"), False, INVALID)


def _tiny() -> list[CorpusImage]:
    return [
        CorpusImage("png-1x1", encode(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"), False, INVALID),
        CorpusImage("jpeg-1x1", encode(Image.new("RGB", (1, 1), (200, 150, 120)), "JPEG"), False, INVALID),
        under_minimum(),
    ]


def _strips() -> list[CorpusImage]:
    images = []
    for length in STRIP_LENGTHS:
        for width, height in {(80, length), (length, 80)}:
            pixels = Image.linear_gradient("L").resize((width, height)).convert("RGB")
            images.append(CorpusImage(f"strip-png-{width}x{height}", encode(pixels, "PNG"), True))
    return images


def _modes(face: Image.Image) -> list[CorpusImage]:
    """Every pixel mode the decoder must normalise to 8-bit RGB, all of the face photo."""
    grey16 = Image.fromarray((np.asarray(face.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    palette = face.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(face.size))
    return [
        CorpusImage("png-16bit-greyscale", encode(grey16, "PNG"), True),
        CorpusImage("jpeg-cmyk", encode(face.convert("CMYK"), "JPEG", quality=90), True),
        CorpusImage("png-palette-transparent", encode(palette, "PNG", transparency=0), True),
        CorpusImage("png-rgba-gradient-alpha", encode(rgba, "PNG"), True),
        CorpusImage("png-la", encode(face.convert("LA"), "PNG"), True),
        CorpusImage("png-bilevel", encode(face.convert("1"), "PNG"), True),
        CorpusImage("jpeg-greyscale", encode(face.convert("L"), "JPEG"), True),
        CorpusImage("jpeg-progressive", encode(face, "JPEG", progressive=True, quality=85), True),
        CorpusImage("png-interlaced", _interlaced_png(face), True),
    ]


_ORIENTATION_STORED = {
    # What is stored so that applying the EXIF orientation gives back the upright photo.
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _orientations(face: Image.Image) -> list[CorpusImage]:
    images = []
    for orientation, stored in _ORIENTATION_STORED.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        pixels = face if stored is None else face.transpose(stored)
        images.append(CorpusImage(f"jpeg-exif-orientation-{orientation}", encode(pixels, "JPEG", exif=exif.tobytes()), True))
    for orientation in (0, 9, 65535):
        exif = Image.Exif()
        exif[0x0112] = orientation
        images.append(CorpusImage(f"jpeg-exif-orientation-invalid-{orientation}", encode(face, "JPEG", exif=exif.tobytes()), True))
    return images


def _other_formats(face: Image.Image, rng: random.Random) -> list[CorpusImage]:
    """Real files of formats Rekognition refuses, and accepted magic numbers on other formats."""
    gif = encode(face.convert("P"), "GIF")
    tiff = encode(face, "TIFF")
    images = [
        CorpusImage("gif", gif, False, NOT_AN_IMAGE),
        CorpusImage("webp", encode(face, "WEBP"), False, NOT_AN_IMAGE),
        CorpusImage("tiff", tiff, False, NOT_AN_IMAGE),
        CorpusImage("bmp", encode(face, "BMP"), False, NOT_AN_IMAGE),
        CorpusImage("jpeg2000", encode(face, "JPEG2000"), False, NOT_AN_IMAGE),
        CorpusImage("ico", encode(face.resize((64, 64)), "ICO"), False, NOT_AN_IMAGE),
        CorpusImage("jpeg-magic-on-a-gif", b"\xff\xd8\xff" + gif, False),
        CorpusImage("png-magic-on-a-tiff", b"\x89PNG\r\n\x1a\n" + tiff, False),
        CorpusImage("apng-two-frames", encode(face, "PNG", save_all=True, append_images=[face.rotate(90)]), True),
    ]
    return images


def _metadata(face: Image.Image, rng: random.Random) -> list[CorpusImage]:
    """Oversized and malformed metadata around an otherwise valid photo."""
    exif = Image.Exif()
    exif[0x9286] = b"ASCII\x00\x00\x00" + b"x" * 60_000  # UserComment: an EXIF segment near its 64 KB cap
    garbage_exif = b"Exif\x00\x00II*\x00" + bytes(rng.getrandbits(8) for _ in range(2000))
    big_text = zlib.compress(b"\x00" * 20_000_000)
    return [
        CorpusImage("jpeg-huge-exif", encode(face, "JPEG", exif=exif.tobytes()), True),
        CorpusImage("jpeg-huge-icc-1mb", encode(face, "JPEG", icc_profile=bytes(1_000_000)), True),
        CorpusImage("png-huge-icc-1mb", encode(face, "PNG", icc_profile=bytes(1_000_000)), True),
        CorpusImage("jpeg-garbage-exif", _jpeg_with_app1(encode(face, "JPEG"), garbage_exif), True),
        CorpusImage("png-ztxt-bomb-20mb", _png_with_chunk(encode(face, "PNG"), b"zTXt", b"comment\x00\x00" + big_text), False),
    ]


def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_with_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """Insert a chunk right after IHDR (signature 8 bytes + IHDR chunk 25 bytes)."""
    return png[:33] + _chunk(kind, data) + png[33:]


def _jpeg_with_size(width: int, height: int) -> bytes:
    """A small baseline JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (100, 100), (90, 120, 150)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _interlaced_png(face: Image.Image) -> bytes:
    """Pillow writes no Adam7 PNGs; so one is assembled here from its seven passes."""
    pixels = np.asarray(face, dtype=np.uint8)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x0, y0, dx, dy
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size:
            for row in sub:
                raw += b"\x00" + row.tobytes()
    header = struct.pack(">IIBBBBB", face.width, face.height, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b"")


def corpus_summary(images: list[CorpusImage]) -> str:
    detected = sum(i.reaches_detector for i in images)
    return f"{len(images)} images ({detected} reach the detector)"
