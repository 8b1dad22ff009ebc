"""DetectFaces and CompareFaces: Rekognition semantics over the engine, no storage involved."""

from __future__ import annotations

from typing import Any

from facegate.engine.pipeline import FaceEngine
from facegate.service.faces import bounding_box, compared_face, face_detail
from facegate.service.images import read_image
from facegate.service.quality_filter import rejection_reasons, usable_faces
from facegate.store.s3_objects import NO_OBJECT_STORE, ObjectReader

MAX_FACES_PER_IMAGE = 100
"""Rekognition analyses at most the 100 largest faces of an image."""

DEFAULT_SIMILARITY_THRESHOLD = 80.0
"""CompareFaces' default, as in Rekognition. Sensitive uses should ask for 99."""


def detect_faces(engine: FaceEngine, params: dict[str, Any], objects: ObjectReader = NO_OBJECT_STORE) -> dict[str, Any]:
    """DetectFaces. ``Attributes`` DEFAULT gives five landmarks; ALL gives all thirty."""
    image = read_image(params["Image"], objects)
    every_landmark = "ALL" in params.get("Attributes", ["DEFAULT"])
    faces = engine.detect(image)[:MAX_FACES_PER_IMAGE]
    return {"FaceDetails": [face_detail(face, image, every_landmark) for face in faces]}


def compare_faces(engine: FaceEngine, params: dict[str, Any], objects: ObjectReader = NO_OBJECT_STORE) -> dict[str, Any]:
    """CompareFaces: the largest source face against up to 100 target faces.

    Faces that fail ``QualityFilter`` (default NONE) are left out of both lists; a source
    image with no usable face is an ``InvalidParameterException``, as in Rekognition.
    """
    threshold = float(params.get("SimilarityThreshold", DEFAULT_SIMILARITY_THRESHOLD))
    level = params.get("QualityFilter", "NONE")
    source_image = read_image(params["SourceImage"], objects, "SourceImage")
    target_image = read_image(params["TargetImage"], objects, "TargetImage")
    source = usable_faces(engine.detect(source_image), params, "NONE", "SourceImage")[0]
    targets = [f for f in engine.detect(target_image) if not rejection_reasons(f, level)][:MAX_FACES_PER_IMAGE]
    descriptors = engine.embed_batch([(source_image, [source]), (target_image, targets)])
    similarities = engine.similarity(descriptors[:1], descriptors[1:])[0] if targets else []
    scored = sorted(zip(similarities, range(len(targets))), key=lambda pair: -pair[0])
    return {
        "SourceImageFace": {
            "BoundingBox": bounding_box(source.detection.box, source_image),
            "Confidence": source.detection.confidence,
        },
        "FaceMatches": [
            {"Similarity": float(s), "Face": compared_face(targets[i], target_image)} for s, i in scored if s >= threshold
        ],
        "UnmatchedFaces": [compared_face(targets[i], target_image) for s, i in scored if s < threshold],
    }
