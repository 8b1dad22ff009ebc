"""The governance gate: the only way to run a Rekognition operation.

For every request: resolve the identity, look up the collection in the caller's own
organisation, ask the Cedar packs, then run the service and record what happened. A
write's audit record is committed inside the write's own transaction (through the
store's ``before_commit`` hook); everything else gets its record right after, committed
together with concurrent requests' records (``store/group_commit.py``) before the caller
is answered. Denied and failed requests are recorded too, including one that fails before
a decision is reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facegate.governance import audit
from facegate.governance.consent import consent_required, live_consent
from facegate.governance.identity import Identity
from facegate.governance.policy import Policies, PolicyDecision, requested_threshold
from facegate.governance.s3_access import audited_objects
from facegate.service import exceptions
from facegate.service.context import Scope, Service
from facegate.service.operations import OPERATIONS, run, unsupported_message
from facegate.store.database import before_commit
from facegate.store.records import CollectionRecord
from facegate.store.transaction import Transaction

DEFAULT_RETENTION_DAYS = 1095
"""BIPA's maximum: three years. New collections get this ``facegate:retention-days`` tag."""


@dataclass(frozen=True)
class Request:
    identity: Identity
    operation: str
    params: dict[str, Any]
    region: str
    request_id: str
    case_reference: str | None


class Gate:
    def __init__(self, service: Service, policies: Policies) -> None:
        self.service = service
        self.policies = policies

    def handle(self, request: Request) -> dict[str, Any]:
        store = self.service.store
        if request.operation not in OPERATIONS:
            error = exceptions.UnsupportedOperationException(unsupported_message(request.operation))
            store.append_audit_grouped({**self._record(request, None), "status": 400, "error_type": error.code, "summary": {}})
            raise error
        try:
            params = self._with_governance_defaults(request)
            with store.reader() as tx:  # one read for everything the decision depends on
                collection, tags, consent_valid = self._resource(tx, request)
                decision = self.policies.decide(
                    request.identity, request.operation, collection, tags, params, request.case_reference, consent_valid, tx=tx
                )
        except Exception as exc:  # no decision was reached, but the request still leaves its record
            self._after([], self._record(request, None), *_failure(exc))
            raise
        base = self._record(request, decision)
        if not decision.allowed:
            store.append_audit_grouped({**base, "status": 400, "error_type": "AccessDeniedException", "summary": {}})
            raise exceptions.AccessDeniedException(decision.explain())

        written: list[dict[str, Any]] = []

        def record_with_write(tx: Transaction) -> None:
            written.append(audit.append(tx, {**base, "status": 200, "error_type": None, "summary": _write_summary(tx)}))

        try:
            result = self._run(request, params, record_with_write)
        except Exception as exc:
            self._after(written, base, *_failure(exc))
            raise
        if not written:  # durable before the results are given out
            store.append_audit_grouped({**base, "status": 200, "error_type": None, "summary": _response_summary(result)})
        return result

    def _run(self, request: Request, params: dict[str, Any], hook: Callable[[Transaction], None]) -> dict[str, Any]:
        token = before_commit.set(hook)
        try:
            return run(self.service, Scope(request.identity.organization, request.region), request.operation, params)
        finally:
            before_commit.reset(token)

    def _after(self, written: list[dict[str, Any]], base: dict[str, Any], status: int, error: str) -> None:
        note = {"after_committed_write": written[0]["seq"]} if written else {}
        self.service.store.append_audit_grouped({**base, "status": status, "error_type": error, "summary": note})

    def _with_governance_defaults(self, request: Request) -> dict[str, Any]:
        if request.operation == "CreateCollection":
            tags = {"facegate:retention-days": str(DEFAULT_RETENTION_DAYS), **request.params.get("Tags", {})}
            return {**request.params, "Tags": tags}
        return request.params

    def _resource(self, tx: Transaction, request: Request) -> tuple[CollectionRecord | None, dict[str, str], bool]:
        """The caller's own collection this request names (another organisation's is invisible)."""
        organization = request.identity.organization
        if "CollectionId" in request.params:
            found = tx.get_collection(organization, request.params["CollectionId"])
            collection = found or CollectionRecord(-1, organization, request.params["CollectionId"], "", "", 0.0)
        elif "ResourceArn" in request.params:
            found = tx.get_collection_by_arn(request.params["ResourceArn"])
            if found is None or found.owner != organization:
                found = None
            collection = found or CollectionRecord(-1, organization, request.params["ResourceArn"], "", "", 0.0)
        else:
            return None, {}, False
        tags = tx.get_tags(collection.pk) if found else {}
        consent_valid = False
        external = request.params.get("ExternalImageId")
        if external and consent_required(tags):
            consent_valid = live_consent(tx, organization, external)
        return collection, tags, consent_valid

    def _record(self, request: Request, decision: PolicyDecision | None) -> dict[str, Any]:
        identity = request.identity
        return {
            "time": time.time(),
            "request_id": request.request_id,
            "key_id": identity.access_key_id,
            "organization": identity.organization,
            "sector": identity.sector,
            "purpose": identity.purpose,
            "operation": request.operation,
            "collection": request.params.get("CollectionId") or request.params.get("ResourceArn"),
            "case_reference": request.case_reference,
            "threshold": requested_threshold(request.operation, request.params),
            "decision": None if decision is None else "allow" if decision.allowed else "deny",
            "policies": [] if decision is None else [str(p) for p in decision.policies],
            **audited_objects(request.params),
        }


def _failure(exc: Exception) -> tuple[int, str]:
    """The HTTP status and error type a client will see for ``exc``."""
    if isinstance(exc, exceptions.RekognitionError):
        return exc.status, exc.code
    return 500, "InternalServerError"


def _write_summary(tx: Transaction) -> dict[str, Any]:
    added = [c.face_id for c in tx.index_changes if c.kind == "add"]
    removed = [c.face_id for c in tx.index_changes if c.kind == "remove"]
    relinked = [c.face_id for c in tx.index_changes if c.kind == "set_user"]
    summary: dict[str, Any] = {"faces_indexed": len(added), "faces_deleted": len(removed)}
    face_ids = added + removed + relinked
    if face_ids:
        summary["face_ids"] = face_ids
    if tx.external_image_ids:
        summary["external_image_ids"] = list(tx.external_image_ids)
    return summary


def _response_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Counts and identifiers from a response: never image bytes, never embeddings."""
    face_ids: list[str] = []
    external_ids: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "FaceId" and isinstance(item, str):
                    face_ids.append(item)
                elif key == "ExternalImageId" and isinstance(item, str):
                    external_ids.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(result)
    matches = result.get("FaceMatches", result.get("UserMatches"))
    summary: dict[str, Any] = {}
    for key in ("FaceDetails", "FaceRecords", "Faces"):
        if key in result:
            summary["faces"] = len(result[key])
    if matches is not None:
        summary["matches"] = len(matches)
        summary["top_similarity"] = max((m["Similarity"] for m in matches), default=None)
        summary["candidates"] = [_candidate(m) for m in matches]  # what a reviewer decides, one by one
    if face_ids:
        summary["face_ids"] = list(dict.fromkeys(face_ids))
    if external_ids:
        summary["external_image_ids"] = list(dict.fromkeys(external_ids))
    return summary


def _candidate(match: dict[str, Any]) -> dict[str, Any]:
    """One match of a search, as its record keeps it: who (FaceId and ExternalImageId, or
    UserId) and how similar (0-100)."""
    found = match.get("Face") or match.get("User") or {}
    named = {k: found[k] for k in ("FaceId", "ExternalImageId", "UserId") if k in found}
    return {**named, "Similarity": match.get("Similarity")}
