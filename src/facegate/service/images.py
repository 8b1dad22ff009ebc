"""From a Rekognition ``Image`` member to a decoded image, with Rekognition's errors.

facegate is offline, so ``S3Object`` images cannot be fetched; callers send ``Bytes``.
Uploaded bytes are decoded in memory and never stored.
"""

from __future__ import annotations

from typing import Any

from facegate.engine.errors import ImageRejected
from facegate.engine.image import DecodedImage, decode_image
from facegate.service import exceptions


def read_image(image: dict[str, Any], member: str = "Image") -> DecodedImage:
    """Decode ``image`` (a Rekognition ``Image`` structure); ``member`` names it in errors."""
    if "S3Object" in image:
        raise exceptions.InvalidS3ObjectException(
            f"{member}.S3Object is not supported: facegate is self-hosted and offline; send {member}.Bytes instead."
        )
    data = image.get("Bytes")
    if not isinstance(data, (bytes, bytearray)):
        raise exceptions.InvalidParameterException(f"{member}.Bytes is required.")
    try:
        return decode_image(bytes(data))
    except ImageRejected as exc:
        error = getattr(exceptions, exc.rekognition_error)
        raise error(f"{member}: {exc}") from exc
