"""What every stateful operation needs: the engines, the store, and who is asking.

``Scope`` is the caller as the service sees it: the account that owns collections
(an organisation, once governance assigns them) and the region named in the request
signature, which appears in ARNs. There is no HTTP here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from facegate.engine.face_models import UnknownFaceModel, engine_for_version
from facegate.engine.pipeline import FaceEngine
from facegate.service import exceptions
from facegate.store.database import Store
from facegate.store.records import CollectionRecord
from facegate.store.s3_objects import NO_OBJECT_STORE, ObjectReader
from facegate.store.transaction import Transaction


@dataclass(frozen=True)
class Scope:
    owner: str
    region: str = "us-east-1"

    @property
    def account_id(self) -> str:
        """A stable 12-digit account number for ARNs, derived from the owner."""
        return f"{int(hashlib.sha256(self.owner.encode()).hexdigest(), 16) % 10**12:012d}"

    def collection_arn(self, collection_id: str) -> str:
        return f"arn:aws:rekognition:{self.region}:{self.account_id}:collection/{collection_id}"


@dataclass(frozen=True)
class Service:
    """``engine`` is the server's default face model: DetectFaces and CompareFaces use it,
    and new collections are created with it. A collection is always indexed and searched
    with the model it was created with (``engine_for``). ``objects`` reads ``S3Object``
    images from the operator's S3-compatible store (none unless one is configured)."""

    engine: FaceEngine
    store: Store
    objects: ObjectReader = NO_OBJECT_STORE

    def engine_for(self, collection: CollectionRecord) -> FaceEngine:
        """The engine of the collection's ``FaceModelVersion``: faces of different models
        are never compared, so a collection keeps its model for life."""
        if collection.face_model_version == self.engine.model_version:
            return self.engine
        try:
            return engine_for_version(collection.face_model_version)
        except UnknownFaceModel:
            raise exceptions.InvalidParameterException(
                f"The collection {collection.collection_id} uses face model version "
                f"{collection.face_model_version}, which this server does not provide"
            ) from None


def require_collection(tx: Transaction, scope: Scope, collection_id: str) -> CollectionRecord:
    """The caller's collection, or ResourceNotFoundException — also for another owner's."""
    collection = tx.get_collection(scope.owner, collection_id)
    if collection is None:
        raise exceptions.ResourceNotFoundException(f"The collection id: {collection_id} does not exist")
    return collection


def after_token(params: dict, pattern: str) -> str | None:
    """Pagination tokens are the last key of the previous page; reject anything else."""
    token = params.get("NextToken")
    if token is None:
        return None
    if not re.fullmatch(pattern, token):
        raise exceptions.InvalidPaginationTokenException("Invalid pagination token.")
    return token
