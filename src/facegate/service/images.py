"""From a Rekognition ``Image`` member to a decoded image, with Rekognition's errors.

An image comes as ``Bytes`` (at most 5 MB) or as an ``S3Object`` (at most 15 MB) that
facegate reads from its operator's S3-compatible store through the service's
``ObjectReader``. Either way the bytes go through the same decoder and the same limits,
are decoded in memory and are never stored.
"""

from __future__ import annotations

from typing import Any

from facegate.engine.errors import ImageRejected
from facegate.engine.image import MAX_IMAGE_BYTES, DecodedImage, decode_image
from facegate.service import exceptions
from facegate.store.s3_objects import ObjectLocation, ObjectReader, ObjectTooLarge, ObjectUnavailable

MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
"""Rekognition's limit for an image read from S3 (15 MB); inline ``Bytes`` stay at 5 MB."""


def read_image(image: dict[str, Any], objects: ObjectReader, member: str = "Image") -> DecodedImage:
    """Decode ``image`` (a Rekognition ``Image`` structure); ``member`` names it in errors."""
    return load_image(image, objects, member)[1]


def load_image(image: dict[str, Any], objects: ObjectReader, member: str = "Image") -> tuple[bytes, DecodedImage]:
    """The image's bytes (IndexFaces fingerprints them) and the image they decode to."""
    s3_object = image.get("S3Object")
    if s3_object is not None and "Bytes" in image:
        raise exceptions.InvalidParameterException(f"{member}: send Bytes or S3Object, not both.")
    if s3_object is not None:
        data, limit = _fetch(s3_object, objects, f"{member}.S3Object"), MAX_S3_IMAGE_BYTES
    elif isinstance(image.get("Bytes"), (bytes, bytearray)):
        data, limit = bytes(image["Bytes"]), MAX_IMAGE_BYTES
    else:
        raise exceptions.InvalidParameterException(f"{member}.Bytes or {member}.S3Object is required.")
    try:
        return data, decode_image(data, limit)
    except ImageRejected as exc:
        error = getattr(exceptions, exc.rekognition_error)
        raise error(f"{member}: {exc}") from exc


def s3_location(s3_object: dict[str, Any], member: str) -> ObjectLocation:
    """``Bucket``, ``Name`` and ``Version`` as a location. botocore's model makes all three
    optional; Rekognition needs the first two."""
    bucket, name = s3_object.get("Bucket"), s3_object.get("Name")
    if not bucket or not name:
        raise exceptions.InvalidS3ObjectException(f"{member}: Bucket and Name are required.")
    return ObjectLocation(bucket, name, s3_object.get("Version"))


def _fetch(s3_object: dict[str, Any], objects: ObjectReader, member: str) -> bytes:
    location = s3_location(s3_object, member)
    try:
        return objects.read(location, MAX_S3_IMAGE_BYTES)
    except ObjectTooLarge as exc:
        raise exceptions.ImageTooLargeException(f"{member}: {exc} (15 MB).") from exc
    except ObjectUnavailable as exc:
        raise exceptions.InvalidS3ObjectException(f"Unable to get object from S3 for {member}: {exc}.") from exc
