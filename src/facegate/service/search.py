"""SearchFaces and SearchFacesByImage: 1:N search through the in-memory index.

``FaceMatchThreshold`` (default 80, Rekognition's) becomes a maximum descriptor
distance through the engine's calibration, so the index only returns faces that pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facegate.engine.pipeline import FaceEngine
from facegate.engine.results import Face
from facegate.engine.image import DecodedImage
from facegate.service import exceptions
from facegate.service.context import Scope, Service, require_collection
from facegate.service.faces import bounding_box, stored_face
from facegate.service.images import read_image
from facegate.service.neighbours import neighbours_within
from facegate.service.quality_filter import usable_faces
from facegate.store.face_index import FaceIndex, Neighbour
from facegate.store.pgvector_index import PgVectorIndex
from facegate.store.records import CollectionRecord
from facegate.store.s3_objects import ObjectReader

DEFAULT_FACE_MATCH_THRESHOLD = 80.0
MAX_MATCHES = 4096


def largest_face(
    engine: FaceEngine, objects: ObjectReader, params: dict[str, Any], default_filter: str = "NONE"
) -> tuple[DecodedImage, list[Face]]:
    """The image (``Bytes`` or ``S3Object``) and its faces that pass ``QualityFilter``,
    largest first; none is an error."""
    image = read_image(params["Image"], objects)
    return image, usable_faces(engine.detect(image), params, default_filter)


def _matches(
    service: Service, collection: CollectionRecord, probe: np.ndarray, params: dict[str, Any], exclude: str | None,
    index: FaceIndex | PgVectorIndex,
) -> list[dict[str, Any]]:
    threshold = float(params.get("FaceMatchThreshold", DEFAULT_FACE_MATCH_THRESHOLD))
    limit = int(params.get("MaxFaces", MAX_MATCHES))
    engine = service.engine_for(collection)
    neighbours = neighbours_within(index, engine, collection.pk, probe, threshold, limit + (exclude is not None))
    return face_matches(service, engine, collection.pk, [n for n in neighbours if n.face_id != exclude][:limit])


def face_matches(service: Service, engine: FaceEngine, collection_pk: int, neighbours: list[Neighbour]) -> list[dict[str, Any]]:
    """Rekognition's ``FaceMatches`` for ``neighbours``, in their order."""
    if not neighbours:  # the usual answer at a strict threshold: no round trip for it
        return []
    with service.store.reader() as tx:
        records = tx.face_summaries(collection_pk, [n.face_id for n in neighbours])
    similarities = engine.calibration.similarity(np.array([n.distance for n in neighbours]))
    return [
        {"Similarity": float(s), "Face": stored_face(records[n.face_id])}
        for n, s in zip(neighbours, similarities)
        if n.face_id in records  # deleted between the index read and this one
    ]


def search_faces(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    face_id = params["FaceId"]
    with service.store.reader() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
    index = service.store.index
    probe = index.vector(collection.pk, face_id)
    if probe is None:
        raise exceptions.ResourceNotFoundException(f"The face id: {face_id} does not exist in the collection")
    return {
        "SearchedFaceId": face_id,
        "FaceMatches": _matches(service, collection, probe, params, face_id, index),
        "FaceModelVersion": collection.face_model_version,
    }


def search_faces_by_image(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with service.store.reader() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
    engine = service.engine_for(collection)
    image, faces = largest_face(engine, service.objects, params)
    probe = engine.embed(image, faces[:1])[0]
    return {
        "SearchedFaceBoundingBox": bounding_box(faces[0].detection.box, image),
        "SearchedFaceConfidence": faces[0].detection.confidence,
        "FaceMatches": _matches(service, collection, probe, params, None, service.store.index),
        "FaceModelVersion": collection.face_model_version,
    }
