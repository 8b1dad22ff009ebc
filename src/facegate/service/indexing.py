"""IndexFaces, ListFaces and DeleteFaces.

IndexFaces keeps descriptors, boxes and ids, never the uploaded image. Re-indexing the
same image bytes with the same ExternalImageId into the same collection returns the
faces already stored instead of duplicating them, as Rekognition does.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from facegate.service.bulk_indexing import AnalysedFace, AnalysedImage, face_records
from facegate.service.context import Scope, Service, after_token, require_collection
from facegate.service.detection import MAX_FACES_PER_IMAGE
from facegate.service.faces import bounding_box, face_detail, stored_face
from facegate.service.images import load_image
from facegate.service.quality_filter import rejection_reasons

FACE_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MAX_FACES_PAGE = 4096


def index_faces(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    external_image_id = params.get("ExternalImageId")
    with service.store.reader() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
    data, image = load_image(params["Image"], service.objects)
    fingerprint = hashlib.sha256(data).hexdigest()
    every_landmark = "ALL" in params.get("DetectionAttributes", ["DEFAULT"])
    with service.store.reader() as tx:
        already = tx.faces_by_fingerprint(collection.pk, fingerprint, external_image_id)
    if already:
        records = [
            {"Face": stored_face(r), "FaceDetail": {"BoundingBox": stored_face(r)["BoundingBox"], "Confidence": r.confidence}}
            for r in already
        ]
        return {"FaceRecords": records, "FaceModelVersion": collection.face_model_version, "UnindexedFaces": []}

    level = params.get("QualityFilter", "AUTO")
    max_faces = int(params.get("MaxFaces", MAX_FACES_PER_IMAGE))
    engine = service.engine_for(collection)
    faces = engine.detect(image)[:MAX_FACES_PER_IMAGE]
    kept, unindexed = [], []
    for face in faces:
        reasons = rejection_reasons(face, level)
        if not reasons and len(kept) >= max_faces:
            reasons = ["EXCEEDS_MAX_FACES"]
        if reasons:
            unindexed.append({"Reasons": reasons, "FaceDetail": face_detail(face, image, every_landmark)})
        else:
            kept.append(face)
    descriptors = engine.embed(image, kept)
    boxes = [bounding_box(face.detection.box, image) for face in kept]
    analysed = AnalysedImage(fingerprint, tuple(
        AnalysedFace((box["Left"], box["Top"], box["Width"], box["Height"]), face.detection.confidence, vector)
        for box, face, vector in zip(boxes, kept, descriptors)
    ))
    stored = face_records(collection, analysed, external_image_id, engine.model_version, time.time())
    with service.store.transaction() as tx:
        require_collection(tx, scope, params["CollectionId"])  # it may have been deleted meanwhile
        tx.insert_faces(stored)
    return {
        "FaceRecords": [
            {"Face": stored_face(record), "FaceDetail": face_detail(face, image, every_landmark)}
            for record, face in zip(stored, kept)
        ],
        "FaceModelVersion": collection.face_model_version,
        "UnindexedFaces": unindexed,
    }


def list_faces(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    limit = params.get("MaxResults") or MAX_FACES_PAGE
    after = after_token(params, FACE_ID)
    with service.store.reader() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
        page = tx.list_faces(collection.pk, after, limit + 1, params.get("UserId"), params.get("FaceIds"))
    response: dict[str, Any] = {
        "Faces": [stored_face(r) for r in page[:limit]],
        "FaceModelVersion": collection.face_model_version,
    }
    if len(page) > limit:
        response["NextToken"] = page[limit - 1].face_id
    return response


def delete_faces(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    """Faces that belong to a user must be disassociated first, as in Rekognition."""
    requested = list(dict.fromkeys(params["FaceIds"]))
    with service.store.transaction() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
        found = tx.get_faces(collection.pk, requested)
        deletable = [f for f in requested if f in found and found[f].user_id is None]
        tx.delete_faces(collection.pk, deletable)
    failures = []
    for face_id in requested:
        if face_id not in found:
            failures.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
        elif found[face_id].user_id is not None:
            failures.append({"FaceId": face_id, "UserId": found[face_id].user_id, "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]})
    return {"DeletedFaces": deletable, "UnsuccessfulFaceDeletions": failures}
