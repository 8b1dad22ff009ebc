"""Picking real photos from FACEGATE_TEST_FACES, and deriving test inputs from them in memory."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def lfw_photo(faces_dir: Path, name: str = "Colin_Powell", number: int = 1) -> Path:
    """An LFW photo: 250x250, one centred frontal face."""
    return faces_dir / "lfw_erstrong" / name / f"{name}_{number:04d}.jpg"


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
