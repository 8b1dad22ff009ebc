"""Decode untrusted image bytes into an RGB pixel array, safely.

Every limit here is checked *before* pixels are allocated: the byte cap first, then the
format's magic number, then the header's declared size. Only then is the image decoded,
so a 60000x60000 PNG bomb costs a header read, not gigabytes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facegate.engine.errors import ImageTooLarge, ImageTooSmall, InvalidImageFormat

MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Rekognition's limit for image bytes passed inline (5 MB)."""

MIN_DIMENSION = 80
"""Rekognition's documented minimum image width and height, in pixels."""

MAX_PIXELS = 40_000_000
"""Decompression-bomb guard: 40 megapixels (120 MB as RGB). Larger images are refused unread."""

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image: ``pixels`` is (height, width, 3) uint8, EXIF orientation applied."""

    pixels: np.ndarray
    format: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def decode_image(data: bytes) -> DecodedImage:
    """Decode JPEG or PNG bytes into an upright RGB array.

    Raises ``ImageTooLarge`` (over 5 MB or over ``MAX_PIXELS``), ``InvalidImageFormat``
    (empty, another format, truncated or corrupt) or ``ImageTooSmall`` (under 80 px).
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"Image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} bytes (5 MB).")
    if data.startswith(_JPEG_MAGIC):
        expected = "JPEG"
    elif data.startswith(_PNG_MAGIC):
        expected = "PNG"
    else:
        raise InvalidImageFormat("Unsupported image format: only JPEG and PNG are accepted.")
    image = _open(data, expected)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"Image is {width}x{height} pixels; the limit is {MAX_PIXELS} pixels.")
    if min(width, height) < MIN_DIMENSION:
        raise ImageTooSmall(
            f"Image is {width}x{height} pixels; each dimension must be at least {MIN_DIMENSION} pixels."
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        pixels = _to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise InvalidImageFormat(f"Image data is corrupt or truncated: {exc}") from exc
    return DecodedImage(pixels=pixels, format=expected)


def _open(data: bytes, expected: str) -> Image.Image:
    """Read only the header; PIL defers pixel decoding until ``load()``."""
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check is stricter and raises a typed error instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[expected])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"Image has too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageFormat(f"Image data is not a valid {expected}: {exc}") from exc
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Normalise every mode we accept (grey, palette, alpha, CMYK, 16-bit) to 8-bit RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the top 8 bits rather than letting PIL clip at 255.
        wide = np.asarray(image, dtype=np.int64)
        grey = np.clip(wide >> 8, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite transparency onto white, as a viewer would show it.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
