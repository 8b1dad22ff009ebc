"""Decode untrusted image bytes into an RGB pixel array, safely and at bounded cost.

Every limit here is checked *before* pixels are allocated: the byte cap first, then the
format's magic number, then the header's declared size. Only then is the image decoded,
so a 60000x60000 PNG bomb costs a header read, not gigabytes.

Large images are analysed at a working resolution of at most ``WORKING_PIXELS``: a JPEG
is decoded reduced (libjpeg scales by 1/2, 1/4 or 1/8 while decoding), a PNG is decoded
under the process-wide ``DECODE_BUDGET`` and scaled down at once. ``DecodedImage`` keeps
the original size, so boxes are still reported in the original image's pixels.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from facegate.engine.decode_budget import PixelBudget
from facegate.engine.errors import ImageTooLarge, ImageTooSmall, InvalidImageFormat

MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Rekognition's limit for image bytes passed inline (5 MB)."""

MIN_DIMENSION = 80
"""Rekognition's documented minimum image width and height, in pixels."""

MAX_PIXELS = 40_000_000
"""Decompression-bomb guard: 40 megapixels (120 MB as RGB). Larger images are refused unread."""

WORKING_PIXELS = 1920 * 1080
"""Images with more pixels are analysed scaled down to this many, aspect ratio kept.

Rekognition documents the same rule (Guidelines and quotas): a face must be at least 40x40
pixels in a 1920x1080 image, and proportionally larger in larger images. A full-HD frame
is thus analysed at full resolution, so finding its 40 px faces stays a matter of
upsampling (issue 10). On a faceless image of this size HOG takes about 0.2 s (twice
that at twice the pixels), decoding a 36 MP PNG down to it 0.17 s; the CNN fallback
costs its 1.8 s at any size (it never sees more than 512x512)."""

DECODE_BUDGET = PixelBudget(MAX_PIXELS)
"""Full-size decodes in flight in this process: at most one maximum-size image (about
160 MB of decoder memory), or several smaller ones, at a time."""

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_ORIENTATION = 0x0112
_UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation to the transpose that shows the image upright (as ``ImageOps.exif_transpose``)."""
_QUARTER_TURNS = {
    Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90
}


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image, EXIF orientation applied.

    ``width`` and ``height`` are the upright original's, in pixels: boxes and landmarks are
    reported in them. ``pixels`` is (rows, columns, 3) uint8 at working resolution: the
    original itself unless it has more than ``WORKING_PIXELS`` pixels.
    """

    pixels: np.ndarray
    format: str
    width: int
    height: int

    @property
    def scale(self) -> tuple[float, float]:
        """Working pixels per original pixel, along x and along y (1.0 unless scaled down)."""
        return self.pixels.shape[1] / self.width, self.pixels.shape[0] / self.height


def working_size(width: int, height: int) -> tuple[int, int]:
    """The size an image of ``width`` x ``height`` is analysed at: at most ``WORKING_PIXELS``."""
    if width * height <= WORKING_PIXELS:
        return width, height
    scale = math.sqrt(WORKING_PIXELS / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))  # rounded down: never over


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES) -> DecodedImage:
    """Decode JPEG or PNG bytes into an upright RGB array at working resolution.

    ``max_bytes`` is the source's limit: 5 MB inline, 15 MB from S3 (Rekognition's). Raises
    ``ImageTooLarge`` (over ``max_bytes`` or over ``MAX_PIXELS``), ``InvalidImageFormat``
    (empty, another format, truncated or corrupt) or ``ImageTooSmall`` (under 80 px).
    """
    if len(data) > max_bytes:
        raise ImageTooLarge(f"Image is {len(data)} bytes; the limit is {max_bytes} bytes ({max_bytes / 2**20:g} MB).")
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
    target = working_size(width, height)
    try:
        if target != (width, height) and expected == "JPEG":
            image.draft(None, target)  # libjpeg decodes at the smallest 1/2^k scale still >= target
        with DECODE_BUDGET.reserve(image.size[0] * image.size[1]):
            image.load()
            orientation = image.getexif().get(_ORIENTATION)
            image = _scaled_down(image, target)
        turn = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
        if turn is not None:
            image = image.transpose(turn)
        pixels = _to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise InvalidImageFormat(f"Image data is corrupt or truncated: {exc}") from exc
    upright = (height, width) if turn in _QUARTER_TURNS else (width, height)
    return DecodedImage(pixels=pixels, format=expected, width=upright[0], height=upright[1])


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


def _scaled_down(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resampled to ``size`` (antialiased; alpha premultiplied by PIL), or itself."""
    if image.size == size:
        return image
    if image.mode in ("P", "PA", "1"):
        # PIL resizes palette and bilevel images by nearest neighbour; interpolate colours instead.
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    # ``reducing_gap`` box-averages first (much faster), but PIL cannot do it on 16-bit images.
    gap = None if image.mode.startswith("I;16") else 2.0
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=gap)


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
