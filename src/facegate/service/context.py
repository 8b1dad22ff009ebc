"""What every stateful operation needs: the engine, the store, and who is asking.

``Scope`` is the caller as the service sees it: the account that owns collections
(an organisation, once governance assigns them) and the region named in the request
signature, which appears in ARNs. There is no HTTP here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from facegate.engine.pipeline import FaceEngine
from facegate.service import exceptions
from facegate.store.database import Store
from facegate.store.records import CollectionRecord
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
    engine: FaceEngine
    store: Store


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
