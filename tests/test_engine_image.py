"""Image decoding: every hostile or unusual input gets a typed error or a correct result."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from facegate.engine.errors import ImageTooLarge, ImageTooSmall, InvalidImageFormat
from facegate.engine.image import MAX_IMAGE_BYTES, decode_image
from facegate.engine.face_models import load_engine
from tests.support.photos import encode, lfw_photo


@pytest.fixture(scope="module")
def face_photo(faces_dir) -> Image.Image:
    return Image.open(lfw_photo(faces_dir)).convert("RGB")


def _single_face_center(data: bytes) -> tuple[float, float]:
    faces = load_engine().detect(decode_image(data), details=False)
    assert len(faces) == 1
    box = faces[0].detection.box
    return ((box.left + box.right) / 2, (box.top + box.bottom) / 2)


def test_empty_bytes_are_an_invalid_format():
    with pytest.raises(InvalidImageFormat):
        decode_image(b"")


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_formats_other_than_jpeg_and_png_are_refused(face_photo, fmt):
    with pytest.raises(InvalidImageFormat, match="only JPEG and PNG"):
        decode_image(encode(face_photo, fmt))


def test_truncated_jpeg_is_an_invalid_format(face_photo):
    data = encode(face_photo, "JPEG", quality=95)
    with pytest.raises(InvalidImageFormat):
        decode_image(data[: len(data) // 2])


def test_corrupt_png_body_is_an_invalid_format(face_photo):
    data = bytearray(encode(face_photo, "PNG"))
    data[100:400] = b"\x00" * 300
    with pytest.raises(InvalidImageFormat):
        decode_image(bytes(data))


def test_jpeg_over_five_megabytes_is_too_large():
    noise = np.random.default_rng(0).integers(0, 256, (1800, 1800, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=100)
    assert len(data) > MAX_IMAGE_BYTES
    with pytest.raises(ImageTooLarge, match="5 MB"):
        decode_image(data)


def test_one_pixel_png_is_too_small():
    with pytest.raises(ImageTooSmall, match="80 pixels"):
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"))


def _png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` zero pixels: tiny on disk, huge in memory."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * 1000) for _ in range(height // 1000)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_png_is_refused_before_allocation():
    bomb = _png_bomb(60000, 60000)
    assert len(bomb) < MAX_IMAGE_BYTES
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(bomb)


def test_cmyk_jpeg_decodes_and_its_face_is_found(face_photo):
    data = encode(face_photo.convert("CMYK"), "JPEG", quality=95)
    image = decode_image(data)
    assert image.pixels.shape == (250, 250, 3)
    x, y = _single_face_center(data)
    assert 90 < x < 160 and 90 < y < 160


def test_sixteen_bit_greyscale_png_keeps_its_contrast_and_face(face_photo):
    grey16 = (np.asarray(face_photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    sixteen_bit = Image.fromarray(grey16)
    assert sixteen_bit.mode.startswith("I;16")
    data = encode(sixteen_bit, "PNG")
    pixels = decode_image(data).pixels
    assert pixels.dtype == np.uint8 and pixels.max() > 200 and pixels.min() < 60
    assert np.array_equal(pixels[:, :, 0], np.asarray(face_photo.convert("L")))
    _single_face_center(data)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA"])
def test_greyscale_palette_and_alpha_images_decode_to_rgb(face_photo, mode):
    pixels = decode_image(encode(face_photo.convert(mode), "PNG")).pixels
    assert pixels.shape == (250, 250, 3) and pixels.dtype == np.uint8


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    assert decode_image(encode(rgba, "PNG")).pixels.min() == 255


def test_exif_orientation_is_honoured(face_photo):
    upright_center = _single_face_center(encode(face_photo, "JPEG", quality=95))
    # Store the pixels rotated 90 degrees and tag EXIF orientation 6 ("rotate 90 CW to view").
    stored = face_photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert decode_image(data).pixels.shape == (250, 250, 3)
    x, y = _single_face_center(data)
    assert abs(x - upright_center[0]) < 6 and abs(y - upright_center[1]) < 6
