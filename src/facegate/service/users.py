"""Users: CreateUser, DeleteUser, ListUsers, AssociateFaces, DisassociateFaces,
SearchUsers, SearchUsersByImage.

A user gathers up to 100 faces of one person; user search scores each user by its
best-matching face. Writes honour ``ClientRequestToken``: a repeated token with the same
parameters returns the first answer, with different ones ``IdempotentParameterMismatchException``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from facegate.service import exceptions
from facegate.service.context import Scope, Service, after_token, require_collection
from facegate.service.detection import MAX_FACES_PER_IMAGE
from facegate.service.faces import face_detail
from facegate.service.neighbours import neighbours_within
from facegate.service.search import largest_face
from facegate.store.records import CollectionRecord
from facegate.store.transaction import Transaction

MAX_FACES_PER_USER = 100
DEFAULT_USER_MATCH_THRESHOLD = 75.0  # AssociateFaces' default, as in Rekognition
DEFAULT_USER_SEARCH_THRESHOLD = 80.0
USER_ID = r"[a-zA-Z0-9_.\-:]+"
MAX_USERS_PAGE = 500


def _idempotent(
    service: Service,
    scope: Scope,
    operation: str,
    params: dict[str, Any],
    write: Callable[[Transaction, CollectionRecord], dict[str, Any]],
) -> dict[str, Any]:
    token = params.get("ClientRequestToken")
    request = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    request_hash = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
    with service.store.transaction() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
        if token is not None:
            seen = tx.get_idempotent(collection.pk, operation, token)
            if seen is not None:
                if seen[0] != request_hash:
                    raise exceptions.IdempotentParameterMismatchException(
                        f"ClientRequestToken {token} was already used with different parameters."
                    )
                return json.loads(seen[1])
        response = write(tx, collection)
        if token is not None:
            tx.put_idempotent(collection.pk, operation, token, request_hash, json.dumps(response))
    return response


def create_user(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    def write(tx: Transaction, collection: CollectionRecord) -> dict[str, Any]:
        if tx.get_user(collection.pk, params["UserId"]) is not None:
            raise exceptions.ConflictException(f"A user with id {params['UserId']} already exists in the collection.")
        tx.create_user(collection.pk, params["UserId"])
        return {}

    return _idempotent(service, scope, "CreateUser", params, write)


def _require_user(tx: Transaction, collection: CollectionRecord, user_id: str) -> None:
    if tx.get_user(collection.pk, user_id) is None:
        raise exceptions.ResourceNotFoundException(f"The user id: {user_id} does not exist in the collection")


def delete_user(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    def write(tx: Transaction, collection: CollectionRecord) -> dict[str, Any]:
        _require_user(tx, collection, params["UserId"])
        tx.delete_user(collection.pk, params["UserId"])
        return {}

    return _idempotent(service, scope, "DeleteUser", params, write)


def list_users(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    limit = params.get("MaxResults") or MAX_USERS_PAGE
    after = after_token(params, USER_ID)
    with service.store.reader() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
        page = tx.list_users(collection.pk, after, limit + 1)
    response: dict[str, Any] = {"Users": [{"UserId": u.user_id, "UserStatus": "ACTIVE"} for u in page[:limit]]}
    if len(page) > limit:
        response["NextToken"] = page[limit - 1].user_id
    return response


def associate_faces(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    """Faces join the user only if they match its existing faces at ``UserMatchThreshold``."""
    user_id = params["UserId"]
    threshold = float(params.get("UserMatchThreshold", DEFAULT_USER_MATCH_THRESHOLD))

    def write(tx: Transaction, collection: CollectionRecord) -> dict[str, Any]:
        _require_user(tx, collection, user_id)
        requested = list(dict.fromkeys(params["FaceIds"]))
        found = tx.get_faces(collection.pk, requested)
        members = [f.embedding for f in tx.list_faces(collection.pk, None, MAX_FACES_PER_USER, user_id=user_id)]
        associated, failures = [], []
        for face_id in requested:
            face = found.get(face_id)
            if face is None:
                failures.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
                continue
            if face.user_id not in (None, user_id):
                failures.append({"FaceId": face_id, "UserId": face.user_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]})
                continue
            if face.user_id is None and members:
                confidence = float(service.engine_for(collection).similarity(face.embedding, np.stack(members)).max())
                if confidence < threshold:
                    failures.append({"FaceId": face_id, "Confidence": confidence, "Reasons": ["LOW_MATCH_CONFIDENCE"]})
                    continue
            associated.append(face_id)
        new = [f for f in associated if found[f].user_id is None]
        if len(members) + len(new) > MAX_FACES_PER_USER:
            raise exceptions.ServiceQuotaExceededException(
                f"A user can have at most {MAX_FACES_PER_USER} faces; {user_id} has {len(members)}."
            )
        tx.set_face_user(collection.pk, new, user_id)
        return {
            "AssociatedFaces": [{"FaceId": f} for f in associated],
            "UnsuccessfulFaceAssociations": failures,
            "UserStatus": "ACTIVE",
        }

    return _idempotent(service, scope, "AssociateFaces", params, write)


def disassociate_faces(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    user_id = params["UserId"]

    def write(tx: Transaction, collection: CollectionRecord) -> dict[str, Any]:
        _require_user(tx, collection, user_id)
        requested = list(dict.fromkeys(params["FaceIds"]))
        found = tx.get_faces(collection.pk, requested)
        done = [f for f in requested if f in found and found[f].user_id == user_id]
        failures = [
            {"FaceId": f, "Reasons": ["FACE_NOT_FOUND"]}
            if f not in found
            else {"FaceId": f, **({"UserId": found[f].user_id} if found[f].user_id else {}), "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
            for f in requested
            if f not in done
        ]
        tx.set_face_user(collection.pk, done, None)
        return {"DisassociatedFaces": [{"FaceId": f} for f in done], "UnsuccessfulFaceDisassociations": failures, "UserStatus": "ACTIVE"}

    return _idempotent(service, scope, "DisassociateFaces", params, write)


def _user_matches(
    service: Service, collection: CollectionRecord, probes: np.ndarray, params: dict[str, Any], exclude_user: str | None
) -> list[dict[str, Any]]:
    """Users ranked by their best face's similarity to any probe."""
    threshold = float(params.get("UserMatchThreshold", DEFAULT_USER_SEARCH_THRESHOLD))
    engine = service.engine_for(collection)
    best: dict[str, float] = {}
    index = service.store.index
    for probe in probes:
        for n in neighbours_within(index, engine, collection.pk, probe, threshold, users_only=True):
            if n.user_id is not None and n.user_id != exclude_user:
                best[n.user_id] = min(best.get(n.user_id, np.inf), n.distance)
    ranked = sorted(best.items(), key=lambda item: item[1])[: int(params.get("MaxUsers", MAX_USERS_PAGE))]
    similarities = engine.calibration.similarity(np.array([d for _, d in ranked]))
    return [
        {"Similarity": float(s), "User": {"UserId": user, "UserStatus": "ACTIVE"}} for (user, _), s in zip(ranked, similarities)
    ]


def search_users(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    if ("UserId" in params) == ("FaceId" in params):
        raise exceptions.InvalidParameterException("SearchUsers needs exactly one of UserId or FaceId.")
    with service.store.reader() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
        if "UserId" in params:
            _require_user(tx, collection, params["UserId"])
            probes = [f.embedding for f in tx.list_faces(collection.pk, None, MAX_FACES_PER_USER, user_id=params["UserId"])]
        else:
            face = tx.get_faces(collection.pk, [params["FaceId"]]).get(params["FaceId"])
            if face is None:
                raise exceptions.ResourceNotFoundException(f"The face id: {params['FaceId']} does not exist in the collection")
            probes = [face.embedding]
    response: dict[str, Any] = {
        "UserMatches": _user_matches(service, collection, np.array(probes).reshape(len(probes), -1), params, params.get("UserId")),
        "FaceModelVersion": collection.face_model_version,
    }
    if "UserId" in params:
        response["SearchedUser"] = {"UserId": params["UserId"]}
    else:
        response["SearchedFace"] = {"FaceId": params["FaceId"]}
    return response


def search_users_by_image(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with service.store.reader() as tx:
        collection = require_collection(tx, scope, params["CollectionId"])
    engine = service.engine_for(collection)
    image, faces = largest_face(engine, service.objects, params)
    probe = engine.embed(image, faces[:1])
    return {
        "UserMatches": _user_matches(service, collection, probe, params, None),
        "FaceModelVersion": collection.face_model_version,
        "SearchedFace": {"FaceDetail": face_detail(faces[0], image, every_landmark=False)},
        "UnsearchedFaces": [
            {"FaceDetails": face_detail(f, image, every_landmark=False), "Reasons": ["FACE_NOT_LARGEST"]}
            for f in faces[1:MAX_FACES_PER_IMAGE]
        ],
    }
