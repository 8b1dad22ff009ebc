"""TagResource, UntagResource, ListTagsForResource on collection ARNs.

Tags matter beyond bookkeeping: governance reads ``facegate:*`` tags for retention and
consent rules, so their values are checked here (``facegate_tags``). Another owner's ARN
is simply not found, as across AWS accounts.
"""

from __future__ import annotations

from typing import Any

from facegate.service import exceptions
from facegate.service.context import Scope, Service
from facegate.service.facegate_tags import check_facegate_tags
from facegate.store.records import CollectionRecord
from facegate.store.transaction import Transaction

MAX_TAGS = 200


def _collection_by_arn(tx: Transaction, scope: Scope, arn: str) -> CollectionRecord:
    collection = tx.get_collection_by_arn(arn)
    if collection is None or collection.owner != scope.owner:
        raise exceptions.ResourceNotFoundException(f"The resource {arn} does not exist")
    return collection


def tag_resource(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    check_facegate_tags(params["Tags"])
    with service.store.transaction() as tx:
        collection = _collection_by_arn(tx, scope, params["ResourceArn"])
        if len(tx.get_tags(collection.pk) | params["Tags"]) > MAX_TAGS:
            raise exceptions.ServiceQuotaExceededException(f"A collection can have at most {MAX_TAGS} tags.")
        tx.set_tags(collection.pk, params["Tags"])
    return {}


def untag_resource(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with service.store.transaction() as tx:
        tx.remove_tags(_collection_by_arn(tx, scope, params["ResourceArn"]).pk, params["TagKeys"])
    return {}


def list_tags_for_resource(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with service.store.reader() as tx:
        return {"Tags": tx.get_tags(_collection_by_arn(tx, scope, params["ResourceArn"]).pk)}
