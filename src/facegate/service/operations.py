"""The Rekognition operations facegate implements, by wire name: one function each.

Stored video's face operations run as background jobs (``service/video.py``). Everything
else in Rekognition's model (labels, text, custom labels, liveness, streaming video)
answers ``UnsupportedOperationException`` rather than a pretend result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facegate.service import collections, detection, exceptions, indexing, search, tags, users, video
from facegate.service.context import Scope, Service

Operation = Callable[[Service, Scope, dict[str, Any]], dict[str, Any]]


def _stateless(function: Callable[..., dict[str, Any]]) -> Operation:
    return lambda service, _scope, params: function(service.engine, params, service.objects)


OPERATIONS: dict[str, Operation] = {
    "DetectFaces": _stateless(detection.detect_faces),
    "CompareFaces": _stateless(detection.compare_faces),
    "CreateCollection": collections.create_collection,
    "DeleteCollection": collections.delete_collection,
    "DescribeCollection": collections.describe_collection,
    "ListCollections": collections.list_collections,
    "IndexFaces": indexing.index_faces,
    "ListFaces": indexing.list_faces,
    "DeleteFaces": indexing.delete_faces,
    "SearchFaces": search.search_faces,
    "SearchFacesByImage": search.search_faces_by_image,
    "CreateUser": users.create_user,
    "DeleteUser": users.delete_user,
    "ListUsers": users.list_users,
    "AssociateFaces": users.associate_faces,
    "DisassociateFaces": users.disassociate_faces,
    "SearchUsers": users.search_users,
    "SearchUsersByImage": users.search_users_by_image,
    "TagResource": tags.tag_resource,
    "UntagResource": tags.untag_resource,
    "ListTagsForResource": tags.list_tags_for_resource,
    "StartFaceDetection": video.start_face_detection,
    "GetFaceDetection": video.get_face_detection,
    "StartFaceSearch": video.start_face_search,
    "GetFaceSearch": video.get_face_search,
}


def run(service: Service, scope: Scope, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one operation; ``params`` are already validated against botocore's model."""
    implementation = OPERATIONS.get(operation)
    if implementation is None:
        raise exceptions.UnsupportedOperationException(unsupported_message(operation))
    return implementation(service, scope, params)


def unsupported_message(operation: str) -> str:
    return (
        f"facegate implements Rekognition's face API only; {operation} is not supported. "
        f"Supported operations: {', '.join(sorted(OPERATIONS))}."
    )
