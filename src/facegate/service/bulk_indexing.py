"""IndexFaces for a whole archive: analysing one image file, and the faces it yields.

Bulk enrolment (``facegate index-dir``) splits IndexFaces in two. ``analyse_image`` is pure
computation (decode, detect, Rekognition's ``QualityFilter`` AUTO, embed), run in worker
processes; its result is plain, picklable data. The parent turns it into ``FaceRecord``s
(``face_records``) and writes them in batches. Faces, boxes and fingerprints are made
exactly as IndexFaces makes them, so a face enrolled in bulk is found, listed and
deduplicated like one enrolled over the wire.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field

import numpy as np

from facegate.engine.errors import ImageRejected
from facegate.engine.image import decode_image
from facegate.engine.pipeline import FaceEngine
from facegate.service.detection import MAX_FACES_PER_IMAGE
from facegate.service.faces import bounding_box
from facegate.service.images import MAX_S3_IMAGE_BYTES
from facegate.service.quality_filter import rejection_reasons
from facegate.store.records import CollectionRecord, FaceRecord

MAX_FILE_BYTES = MAX_S3_IMAGE_BYTES
"""An archive file is read by facegate itself, like an ``S3Object``, so it gets the S3
limit (15 MB) rather than the 5 MB of inline ``Bytes``."""

QUALITY_FILTER = "AUTO"
"""IndexFaces' default ``QualityFilter``: faces too small, blurred or turned are not indexed."""
QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")

EXTERNAL_IMAGE_ID_MAX = 255
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_.\-:]")


def external_image_id(name: str) -> str:
    """``name`` made into an ``ExternalImageId`` (Rekognition's pattern ``[a-zA-Z0-9_.\\-:]+``,
    at most 255 characters): every other character becomes ``_``; a longer name keeps its
    end, where file names differ (``IMG_0001.jpg``, ``IMG_0002.jpg``)."""
    cleaned = _NOT_ALLOWED.sub("_", name) or "_"
    return cleaned[-EXTERNAL_IMAGE_ID_MAX:]


@dataclass(frozen=True)
class AnalysedFace:
    """One face IndexFaces would keep: box as ratios of the image's width and height
    (Left, Top, Width, Height), detector confidence 0–100, unit-length descriptor."""

    box: tuple[float, float, float, float]
    confidence: float
    embedding: np.ndarray


@dataclass(frozen=True)
class AnalysedImage:
    """What one file yields. ``error`` is the Rekognition error IndexFaces would have
    answered (``InvalidImageFormatException: ...``) when the file cannot be analysed;
    ``unindexed`` holds the ``Reasons`` of each face the quality filter left out."""

    fingerprint: str
    faces: tuple[AnalysedFace, ...] = ()
    unindexed: tuple[tuple[str, ...], ...] = field(default=())
    error: str | None = None


def analyse_image(engine: FaceEngine, data: bytes, quality_filter: str = QUALITY_FILTER) -> AnalysedImage:
    """Decode, detect, filter and embed as IndexFaces does (its ``QualityFilter``, up to
    ``MAX_FACES_PER_IMAGE`` faces). The fingerprint is SHA-256 of the bytes, IndexFaces'."""
    fingerprint = hashlib.sha256(data).hexdigest()
    try:
        image = decode_image(data, MAX_FILE_BYTES)
    except ImageRejected as exc:
        return AnalysedImage(fingerprint, error=f"{exc.rekognition_error}: {exc}")
    kept, unindexed = [], []
    for face in engine.detect(image)[:MAX_FACES_PER_IMAGE]:
        reasons = rejection_reasons(face, quality_filter)
        if reasons:
            unindexed.append(tuple(reasons))
        else:
            kept.append(face)
    descriptors = engine.embed(image, kept)
    faces = tuple(
        AnalysedFace(
            tuple(bounding_box(face.detection.box, image)[k] for k in ("Left", "Top", "Width", "Height")),  # type: ignore[arg-type]
            face.detection.confidence,
            vector,
        )
        for face, vector in zip(kept, descriptors)
    )
    return AnalysedImage(fingerprint, faces, tuple(unindexed))


def face_records(
    collection: CollectionRecord, image: AnalysedImage, external_id: str | None, model_version: str, now: float
) -> list[FaceRecord]:
    """The rows IndexFaces would store for ``image``: new FaceIds and one ImageId."""
    image_id = str(uuid.uuid4())
    return [
        FaceRecord(
            face_id=str(uuid.uuid4()),
            collection_pk=collection.pk,
            image_id=image_id,
            external_image_id=external_id,
            user_id=None,
            box=face.box,
            confidence=face.confidence,
            embedding=face.embedding,
            model_version=model_version,
            image_fingerprint=image.fingerprint,
            created_at=now,
        )
        for face in image.faces
    ]
